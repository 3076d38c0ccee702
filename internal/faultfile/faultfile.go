// Package faultfile wraps segment files for fault-injection tests, through
// log.Config.WrapFile: a Gate holds every fdatasync while it is closed, so
// a test can look at what readers see while data is written but not yet
// durable. Only tests import it.
//
// Concurrency: a Gate's methods are safe for concurrent use, and so are
// the files it wraps.
//
// Usage:
//
//	g := faultfile.NewGate()
//	l, err := log.Open(dir, log.Config{WrapFile: g.Wrap})
//	g.Close()    // later Syncs block
//	<-g.Held()   // a Sync is blocked
//	g.Open()     // it and every later one go through
package faultfile

import (
	"os"
	"sync"

	"github.com/ferrymq/ferry/segment"
)

// Gate holds the Syncs of the files it wraps while it is closed. The zero
// value is not usable; call NewGate.
type Gate struct {
	mu     sync.Mutex
	closed bool
	opened chan struct{} // closed by Open
	held   chan struct{} // a send for each Sync held
}

// NewGate returns an open gate.
func NewGate() *Gate { return &Gate{held: make(chan struct{}, 1024)} }

// Close makes every later Sync of a wrapped file block until Open.
func (g *Gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed, g.opened = true, make(chan struct{})
	}
}

// Open releases the Syncs held and lets later ones through.
func (g *Gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.closed = false
		close(g.opened)
	}
}

// Held receives once for each Sync that the closed gate holds.
func (g *Gate) Held() <-chan struct{} { return g.held }

// Wrap is a log.Config.WrapFile (segment.Config.WrapFile) whose files'
// Syncs pass through the gate.
func (g *Gate) Wrap(f *os.File) segment.File { return &file{File: f, gate: g} }

type file struct {
	*os.File
	gate *Gate
}

func (f *file) Sync() error {
	g := f.gate
	g.mu.Lock()
	closed, opened := g.closed, g.opened
	g.mu.Unlock()
	if closed {
		select {
		case g.held <- struct{}{}:
		default:
		}
		<-opened
	}
	return f.File.Sync()
}
