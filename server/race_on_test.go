//go:build race

package server

// raceBuild: the tests run with the race detector, and so does the ferry
// binary they build (buildFerry).
const raceBuild = true
