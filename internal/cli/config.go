package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// configFlag names the flag of a command that reads its settings from a
// TOML file (`weft serve --config weft.toml`).
const configFlag = "config"

// applyConfig reads the file named by cmd's --config flag (or
// WEFT_CONFIG), if it has one, and sets each flag the file names that
// was not given on the command line. The values take a default's place:
// environment variables, applied afterwards to flags not given, override
// them, and flags override both. A key that is not one of the command's
// flags, or a value of the wrong type, is refused with its line, as a
// usage error: the file stands for the command line.
func applyConfig(cmd *cobra.Command, lookupEnv func(string) (string, bool)) error {
	if err := readConfig(cmd, lookupEnv); err != nil {
		return &usageError{err: err}
	}
	return nil
}

// readConfig is applyConfig's work.
func readConfig(cmd *cobra.Command, lookupEnv func(string) (string, bool)) error {
	fs := cmd.Flags()
	cf := fs.Lookup(configFlag)
	if cf == nil {
		return nil
	}
	path := cf.Value.String()
	if !cf.Changed {
		if v, ok := lookupEnv("WEFT_CONFIG"); ok && v != "" {
			path = v
		}
	}
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var values map[string]any
	md, err := toml.NewDecoder(bytes.NewReader(raw)).Decode(&values)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: line %d: %s", path, pe.Position.Line, pe.Message)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	// In the file's order, so that the first problem reported is the
	// first in the file.
	keys := make([]string, 0, len(values))
	for _, k := range md.Keys() {
		if len(k) == 1 {
			keys = append(keys, k[0])
		}
	}
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == configFlag || key == "help" {
			return fmt.Errorf("%s: line %d: unknown setting %q (the settings are the flags of weft %s: %s)",
				path, keyLine(raw, key), key, cmd.Name(), strings.Join(settingNames(fs), ", "))
		}
		if f.Changed {
			continue // the command line wins
		}
		if err := setFlag(f, values[key]); err != nil {
			return fmt.Errorf("%s: line %d: %s: %w", path, keyLine(raw, key), key, err)
		}
	}
	return nil
}

// setFlag sets a flag to a value decoded from TOML, which must be of the
// flag's type: a string for strings and durations, a boolean, an
// integer, or an array of strings for a repeatable flag.
func setFlag(f *pflag.Flag, v any) error {
	var s string
	switch typ := f.Value.Type(); typ {
	case "bool":
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("expected true or false, got %s", tomlType(v))
		}
		s = strconv.FormatBool(b)
	case "int", "int64", "int32", "uint", "uint64":
		n, ok := v.(int64)
		if !ok {
			return fmt.Errorf("expected an integer, got %s", tomlType(v))
		}
		s = strconv.FormatInt(n, 10)
	case "stringSlice", "stringArray":
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("expected an array of strings, got %s", tomlType(v))
		}
		items := make([]string, len(list))
		for i, item := range list {
			if items[i], ok = item.(string); !ok {
				return fmt.Errorf("expected an array of strings, got %s in it", tomlType(item))
			}
		}
		sv, ok := f.Value.(pflag.SliceValue)
		if !ok {
			return fmt.Errorf("cannot be set from a file")
		}
		return sv.Replace(items)
	default: // strings, durations and the like
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a string, got %s", tomlType(v))
		}
		s = str
	}
	if err := f.Value.Set(s); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

// tomlType names a decoded TOML value's type for a message.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// settingNames lists the flags a config file may set, sorted.
func settingNames(fs *pflag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != configFlag && f.Name != "help" && !f.Hidden {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	return names
}

// keyLine finds the line of a top-level key in a TOML file, bare or
// quoted, or a table header of that name; 0 when it cannot tell.
func keyLine(raw []byte, key string) int {
	q := regexp.QuoteMeta(key)
	re := regexp.MustCompile(`^\s*(?:` + q + `|"` + q + `"|'` + q + `'|\[\s*` + q + `\s*\])\s*(?:=|\.|$)`)
	for i, line := range strings.Split(string(raw), "\n") {
		if re.MatchString(line) {
			return i + 1
		}
	}
	return 0
}
