// Package yamldoc reads a file that must hold exactly one YAML document
// (a spec, a fleet's matrix), for parsers that walk its nodes and report
// errors at their lines.
package yamldoc

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrEmpty is the error for an input without a document.
var ErrEmpty = errors.New("empty")

// Error is a syntax error, or a second document, at a line (0: unknown).
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// One decodes data's single document and returns its root node (the
// document node's content).
func One(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrEmpty
		}
		return nil, &Error{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Line: extra.Line, Msg: "more than one YAML document"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	return root, nil
}
