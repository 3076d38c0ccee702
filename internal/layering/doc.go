// Package layering holds no code: its test checks that Ferry's packages
// import only downward, as DESIGN.md lays them out (server reaches storage
// only through partition; the storage stack knows no wire protocol or
// network; coordinators know nothing above them; bench is a client). It
// reads each package's imports with go/build, so `make test` fails when a
// change breaks the layering.
package layering
