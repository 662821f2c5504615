package yamldoc

import (
	"errors"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestOne(t *testing.T) {
	root, err := One([]byte("a: 1\nb: [x]\n"))
	if err != nil || root.Kind != yaml.MappingNode || len(root.Content) != 4 {
		t.Fatalf("%v %+v", err, root)
	}
	if root, err := One([]byte("- a\n")); err != nil || root.Kind != yaml.SequenceNode {
		t.Errorf("a list: %v", err)
	}
	if _, err := One([]byte("")); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	if _, err := One([]byte("# only a comment\n")); !errors.Is(err, ErrEmpty) {
		t.Errorf("a comment: %v", err)
	}
	var e *Error
	if _, err := One([]byte("a: 1\n---\nb: 2\n")); !errors.As(err, &e) || e.Line < 2 || e.Msg != "more than one YAML document" {
		t.Errorf("two documents: %v", err)
	}
	if _, err := One([]byte("a: [1\n")); !errors.As(err, &e) || e.Msg == "" || e.Msg[:5] == "yaml:" {
		t.Errorf("a syntax error: %v", err)
	}
}
