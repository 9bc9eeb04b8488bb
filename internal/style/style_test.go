// Package style holds tests that enforce the project's conventions on the
// whole tree, so that review does not have to: every package documents
// itself, the domain package stays free of dependencies, and services reach
// each other only through their bus clients.
package style

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/homemesh/homemesh"

type pkg struct {
	dir     string
	doc     bool
	imports map[string]bool
}

func packages(t *testing.T) map[string]*pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*pkg{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		p := out[rel]
		if p == nil {
			p = &pkg{dir: rel, imports: map[string]bool{}}
			out[rel] = p
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			p.doc = true
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			p.imports[path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for dir, p := range packages(t) {
		if !p.doc {
			t.Errorf("package %s has no package comment (add a doc.go)", dir)
		}
	}
}

func TestDomainPackageImportsOnlyTheStandardLibrary(t *testing.T) {
	root := packages(t)["."]
	if root == nil {
		t.Fatal("root package not found")
	}
	for imp := range root.imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("the root package imports %s; it may use only the standard library", imp)
		}
	}
}

// meshProtocol lists the packages under mesh/ that define the mesh's
// protocol rather than run any part of it: node ids and route packets,
// node certificates and links, the agent ⇄ hub messages. Like bus, they
// are the contract between services (auth issues node certificates, the
// border speaks the messages), so any service may use them; the mesh's
// running parts (border, meshnode, agent, sim) stay internal.
var meshProtocol = []string{"mesh/route", "mesh/link", "mesh/meshapp"}

// services reach one another only over the bus: a service may use another's
// exported client package, never its sub-packages, and nothing but the host
// (node, cli, cmd) may import node or cli.
func TestServicesStayApart(t *testing.T) {
	services := []string{"registry", "auth", "edge", "gateway", "lighting", "climate", "alarm", "history", "automation", "ota", "mesh"}
	for dir, p := range packages(t) {
		top, _, _ := strings.Cut(filepath.ToSlash(dir), "/")
		for imp := range p.imports {
			rel, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			impTop, sub, _ := strings.Cut(rel, "/")
			if (impTop == "node" || impTop == "cli") && top != "node" && top != "cli" && top != "cmd" {
				t.Errorf("%s imports %s: only the host may", dir, imp)
			}
			if top == impTop || top == "node" || top == "cli" || top == "cmd" || top == "internal" {
				continue
			}
			if contains(meshProtocol, rel) {
				continue
			}
			for _, s := range services {
				if impTop == s && sub != "" {
					t.Errorf("%s imports %s, an internal part of the %s service; use its client over the bus", dir, imp, s)
				}
			}
			if (top == "bus" || top == ".") && contains(services, impTop) {
				t.Errorf("%s imports the service %s", dir, imp)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
