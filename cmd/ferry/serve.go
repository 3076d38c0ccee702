package main

import (
	"context"
	"errors"
	"io"
)

// runServe runs a Ferry broker. (placeholder: the lead owns this file)
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("serve: not implemented yet")
}
