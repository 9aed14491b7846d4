package edge

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsNoSiblings enforces the architecture rule: the cache engine
// imports none of Verge's other components. The next tier reaches it as an
// http.RoundTripper wired in cmd/verge.
func TestImportsNoSiblings(t *testing.T) {
	const module = "github.com/vergecdn/verge/"
	allowed := []string{module + "edge", module + "configs"}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module) {
				continue
			}
			ok := false
			for _, a := range allowed {
				if p == a || strings.HasPrefix(p, a+"/") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s: edge must not import its sibling components", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
