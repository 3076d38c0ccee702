package layering

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/ferrymq/ferry"

// rule forbids the packages in from to import any of not, directly or,
// with transitive, through other packages of the module.
type rule struct {
	what       string
	from       []string // packages of the module, relative to its root
	not        []string // import paths; "/..." at the end takes the packages below too
	transitive bool
}

// m names a package of the module.
func m(rel string) string { return module + "/" + rel }

const (
	kmsg = "github.com/twmb/franz-go/pkg/kmsg"
	kerr = "github.com/twmb/franz-go/pkg/kerr"
	kgo  = "github.com/twmb/franz-go/pkg/kgo"
	prom = "github.com/prometheus/..."
)

var rules = []rule{
	{
		what: "server reaches storage only through partition",
		from: []string{"server"},
		not:  []string{m("log"), m("segment")},
	},
	{
		what:       "the storage stack knows no wire protocol and no network",
		from:       []string{"record", "segment", "log", "partition", "internal/durable"},
		not:        []string{kmsg, kerr, kgo, "net/...", m("server"), m("meta"), m("coordstate"), m("group")},
		transitive: true,
	},
	{
		what:       "only the broker's collector (server) and the admin listener know Prometheus: the layers below count with plain atomics and internal/metric",
		from:       []string{"record", "segment", "log", "partition", "meta", "coordstate", "group", "txn", "share", "internal/metric"},
		not:        []string{prom},
		transitive: true,
	},
	{
		what:       "internal/metric is a leaf: standard library only",
		from:       []string{"internal/metric"},
		not:        []string{m("..."), prom, kmsg, kerr, kgo},
		transitive: true,
	},
	{
		what:       "metadata and coordinator state know no wire protocol and nothing above them",
		from:       []string{"meta", "coordstate"},
		not:        []string{kmsg, kerr, "net/...", m("server"), m("group"), m("txn"), m("share"), m("cmd/...")},
		transitive: true,
	},
	{
		what:       "auth knows no wire protocol and nothing above it",
		from:       []string{"auth"},
		not:        []string{kmsg, kerr, kgo, m("server"), m("group"), m("txn"), m("share"), m("cmd/...")},
		transitive: true,
	},
	{
		what:       "coordinators know nothing above them: their stores come through their own interfaces",
		from:       []string{"group", "txn", "share"},
		not:        []string{m("server"), m("meta"), m("coordstate"), m("bench/..."), m("cmd/..."), "net/..."},
		transitive: true,
	},
	{
		what:       "the replicated metadata log knows nothing above meta",
		from:       []string{"raftlog"},
		not:        []string{kmsg, kgo, m("server"), m("cluster"), m("group"), m("cmd/...")},
		transitive: true,
	},
	{
		what:       "a node's cluster work is below the wire protocol",
		from:       []string{"cluster"},
		not:        []string{m("server"), m("group"), m("log"), m("segment"), m("cmd/...")},
		transitive: false,
	},
	{
		what:       "bench is a Kafka client and never imports the broker",
		from:       []string{"bench"},
		not:        []string{m("server"), m("meta"), m("partition"), m("log"), m("segment")},
		transitive: true,
	},
}

// packages maps each package of the module (relative path) to its
// imports, read from its non-test files.
func packages(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	pkgs := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
			return filepath.SkipDir
		}
		p, err := build.Default.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, path)
		pkgs[filepath.ToSlash(rel)] = p.Imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// matches reports whether import path imp is named by pattern.
func matches(imp, pattern string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return imp == base || strings.HasPrefix(imp, base+"/")
	}
	return imp == pattern
}

// reach returns every import of pkg, with the chain that reaches it,
// following module packages when transitive.
func reach(pkgs map[string][]string, pkg string, transitive bool) map[string][]string {
	chains := map[string][]string{}
	var walk func(p string, chain []string)
	walk = func(p string, chain []string) {
		for _, imp := range pkgs[p] {
			if _, seen := chains[imp]; seen {
				continue
			}
			c := append(slices.Clone(chain), imp)
			chains[imp] = c
			if rel, ok := strings.CutPrefix(imp, module+"/"); ok && transitive {
				walk(rel, c)
			}
		}
	}
	walk(pkg, []string{module + "/" + pkg})
	return chains
}

func TestLayering(t *testing.T) {
	pkgs := packages(t)
	for _, must := range []string{"server", "partition", "log", "segment", "record", "group", "meta", "coordstate", "bench"} {
		if _, ok := pkgs[must]; !ok {
			t.Fatalf("package %s not found; the rules below would check nothing", must)
		}
	}
	for _, r := range rules {
		for _, from := range r.from {
			if _, ok := pkgs[from]; !ok {
				continue // not written yet (txn, share)
			}
			chains := reach(pkgs, from, r.transitive)
			imps := make([]string, 0, len(chains))
			for imp := range chains {
				imps = append(imps, imp)
			}
			sort.Strings(imps)
			for _, imp := range imps {
				for _, not := range r.not {
					if matches(imp, not) {
						t.Errorf("%s: %s imports %s (via %s)", r.what, from, imp, strings.Join(chains[imp], " -> "))
					}
				}
			}
		}
	}
}

// TestMatches checks the pattern rules the layering test relies on.
func TestMatches(t *testing.T) {
	for _, c := range []struct {
		imp, pattern string
		want         bool
	}{
		{m("log"), m("log"), true},
		{"log/slog", m("log"), false},
		{m("logx"), m("log"), false},
		{m("cmd/ferry"), m("cmd/..."), true},
		{m("bench"), m("bench/..."), true},
		{m("bench/benchtest"), m("bench/..."), true},
		{"net", "net/...", true},
		{"net/http", "net/...", true},
		{"netip", "net/...", false},
		{kmsg, kmsg, true},
		{"github.com/twmb/franz-go/pkg/kbin", kmsg, false},
	} {
		if got := matches(c.imp, c.pattern); got != c.want {
			t.Errorf("matches(%q, %q) = %v", c.imp, c.pattern, got)
		}
	}
}
