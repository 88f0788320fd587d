package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what `weft version --format json` prints.
type versionInfo struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
}

// buildVersion reads the version from the binary's build information: the
// main module's version when built with `go install ...@version`, "devel"
// for a build from a checkout.
func buildVersion() versionInfo {
	v := versionInfo{Version: "devel", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
		v.Version = mv
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the version line for people, as `weft version` and
// `weft --version` print it.
func (v versionInfo) String() string {
	s := fmt.Sprintf("weft %s (%s, %s)", v.Version, v.Go, v.Platform)
	if v.Commit != "" {
		s += " commit " + v.Commit
		if v.Modified {
			s += " (modified)"
		}
	}
	return s
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of weft",
		Long:    "Print weft's version, the Go version it was built with, and the commit when known.",
		Example: "  weft version\n  weft version --format json",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(*cobra.Command, []string) error {
			v := buildVersion()
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, v)
			}
			_, err := fmt.Fprintln(g.stdout, v)
			return err
		},
	}
}
