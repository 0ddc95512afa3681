package policy

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// fieldError is one configuration error: FILE:LINE: KEY.PATH: message.
type fieldError struct {
	file string
	line int    // 0 when unknown
	path string // dotted key path, "" for file-level errors
	msg  string
}

func (e *fieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.file)
	if e.line > 0 {
		b.WriteString(":" + strconv.Itoa(e.line))
	}
	b.WriteString(": ")
	if e.path != "" {
		b.WriteString(e.path + ": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

// decoder walks a yaml.v3 node tree by hand, so that every error carries the
// line and key path, and collects all errors instead of stopping at the first.
type decoder struct {
	file  string
	env   func(string) (string, bool)
	errs  []*fieldError
	lines map[string]int // key path -> line of its key, for cross-field errors
	// warnings are problems that do not stop the start (Config.Warnings).
	warnings []string
}

// errorf records an error at line for the key path.
func (d *decoder) errorf(line int, path, format string, args ...any) {
	d.errs = append(d.errs, &fieldError{file: d.file, line: line, path: path, msg: fmt.Sprintf(format, args...)})
}

// lineOf returns the line of path's key, or of its nearest recorded parent, or 1.
func (d *decoder) lineOf(path string) int {
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 1
}

// err returns all recorded errors sorted by line (stable), joined one per line.
func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].line < d.errs[j].line })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// entry is one key: value pair of a mapping.
type entry struct{ key, val *yaml.Node }

// section is a decoded mapping with its known keys, ready to be read field by field.
type section struct {
	d    *decoder
	path string // "" for the document root
	line int    // line of the key that introduced the section
	m    map[string]entry
}

// sub returns the full key path of key within s.
func (s *section) sub(key string) string {
	if !plainKey(key) {
		key = strconv.Quote(key) // an empty or odd key stays visible in messages
	}
	if s.path == "" {
		return key
	}
	return s.path + "." + key
}

// plainKey reports whether a key can be printed as it is in a key path.
func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// has reports whether key was given.
func (s *section) has(key string) bool { _, ok := s.m[key]; return ok }

// section decodes n as a mapping that may hold only the known keys. Unknown,
// duplicate and non-scalar keys are errors. A null value (a key with nothing
// under it, or everything commented out) is an empty section.
func (d *decoder) section(n *yaml.Node, path string, line int, known ...string) *section {
	s := &section{d: d, path: path, line: line, m: map[string]entry{}}
	if n == nil || isNull(n) {
		return s
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(lineOr(n, line), path, "want a mapping of keys (%s), got %s", strings.Join(known, ", "), describe(n))
		return s
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "want a key name, got %s", describe(k))
			continue
		}
		p := s.sub(k.Value)
		if prev, dup := s.m[k.Value]; dup {
			d.errorf(k.Line, p, "duplicate key (first at line %d): remove one", prev.key.Line)
			continue
		}
		if known != nil && !slices.Contains(known, k.Value) {
			d.errorf(k.Line, p, "unknown key (known: %s)%s", strings.Join(known, ", "), unknownHint(k.Value))
			continue
		}
		s.m[k.Value] = entry{k, v}
		d.lines[p] = k.Line
	}
	return s
}

// unknownHint adds advice for keys people commonly try.
func unknownHint(key string) string {
	switch key {
	case "password", "pass", "secret":
		return "; never put a password in the file: use password_env or password_file"
	case "user", "login":
		return "; did you mean username or username_env?"
	case "<<":
		return "; merge keys (<<) and aliases are not supported: write the values out"
	}
	return ""
}

// value returns the value node of key and its line, or ok=false when the key
// is absent. Aliases are refused here, so no reader ever follows one.
func (s *section) value(key string) (v *yaml.Node, line int, ok bool) {
	e, ok := s.m[key]
	if !ok {
		return nil, 0, false
	}
	line = lineOr(e.val, e.key.Line)
	if e.val.Kind == yaml.AliasNode {
		s.d.errorf(line, s.sub(key), "anchors and aliases (*name) are not supported: write the value out")
		return nil, 0, false
	}
	return e.val, line, true
}

// scalar returns key's value if it is a scalar with one of the given tags.
func (s *section) scalar(key, want string, tags ...string) (v *yaml.Node, line int, ok bool) {
	v, line, ok = s.value(key)
	if !ok {
		return nil, 0, false
	}
	if v.Kind != yaml.ScalarNode || !slices.Contains(tags, v.ShortTag()) {
		s.d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return nil, 0, false
	}
	return v, line, true
}

// str reads a string key into dst.
func (s *section) str(key string, dst *string) (line int, ok bool) {
	v, line, ok := s.scalar(key, "a string", "!!str")
	if ok {
		*dst = v.Value
	}
	return line, ok
}

// Bounds for integer and number keys.
const maxInt = math.MaxInt32

var inf = math.Inf(1)

// integer reads an integer key in [min, max] into dst.
func (s *section) integer(key string, min, max int, dst *int) {
	want := fmt.Sprintf("an integer from %d to %d", min, max)
	if max == maxInt {
		want = fmt.Sprintf("an integer >= %d", min)
	}
	v, line, ok := s.scalar(key, want, "!!int")
	if !ok {
		return
	}
	var n int64
	if err := v.Decode(&n); err != nil || n < int64(min) || n > int64(max) {
		s.d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return
	}
	*dst = int(n)
}

// number reads a finite number in [min, max] into dst.
func (s *section) number(key string, min, max float64, dst *float64) {
	want := fmt.Sprintf("a number from %g to %g", min, max)
	if math.IsInf(max, 1) {
		want = fmt.Sprintf("a number >= %g", min)
	}
	v, line, ok := s.scalar(key, want, "!!int", "!!float")
	if !ok {
		return
	}
	var f float64
	if err := v.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < min || f > max {
		s.d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return
	}
	*dst = f
}

// duration reads a positive Go duration ("30s", "120h") into dst.
func (s *section) duration(key string, dst *time.Duration) {
	const want = `a Go duration greater than 0 such as "30s", "5m" or "120h"`
	v, line, ok := s.scalar(key, want, "!!str")
	if !ok {
		return
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil || d <= 0 {
		s.d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return
	}
	*dst = d
}

var sizeRE = regexp.MustCompile(`^([0-9]+) ?(B|KiB|MiB|GiB)?$`)

var sizeUnits = map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}

// size reads a byte size >= 1 into dst: an integer, or a string such as "35MiB".
func (s *section) size(key string, dst *int64) {
	const want = `a size: bytes (36700160) or a whole number with B, KiB, MiB or GiB ("35MiB"; KB, MB and GB are not accepted)`
	v, line, ok := s.scalar(key, want, "!!int", "!!str")
	if !ok {
		return
	}
	n, ok := parseSize(v.Value)
	if !ok || n < 1 {
		s.d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return
	}
	*dst = n
}

// parseSize parses "123", "123B", "35MiB", "1 GiB".
func parseSize(s string) (int64, bool) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	unit := sizeUnits[m[2]]
	if err != nil || n > math.MaxInt64/unit {
		return 0, false
	}
	return n * unit, true
}

// oneOf reads key, which must be one of values, into dst.
func (s *section) oneOf(key string, dst *string, values ...string) (line int, ok bool) {
	want := quoteList(values, "or")
	v, line, ok := s.scalar(key, want, "!!str")
	if !ok {
		return 0, false
	}
	if !slices.Contains(values, v.Value) {
		s.d.errorf(line, s.sub(key), "want %s, got %s", want, describe(v))
		return 0, false
	}
	*dst = v.Value
	return line, true
}

// list returns key's value as a sequence of string scalars, with their lines.
func (s *section) list(key, want string) (items []string, lines []int, ok bool) {
	v, line, ok := s.value(key)
	if !ok {
		return nil, nil, false
	}
	if v.Kind != yaml.SequenceNode {
		s.d.errorf(line, s.sub(key), "want a list of %s, got %s", want, describe(v))
		return nil, nil, false
	}
	ok = true
	for i, it := range v.Content {
		if it.Kind != yaml.ScalarNode || it.ShortTag() != "!!str" {
			s.d.errorf(lineOr(it, line), fmt.Sprintf("%s[%d]", s.sub(key), i), "want %s, got %s", want, describe(it))
			ok = false
			continue
		}
		items = append(items, it.Value)
		lines = append(lines, lineOr(it, line))
	}
	return items, lines, ok
}

// isNull reports whether n is an explicit or implicit null ("key:" with nothing).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// lineOr returns n's line, or def if n has none.
func lineOr(n *yaml.Node, def int) int {
	if n != nil && n.Line > 0 {
		return n.Line
	}
	return def
}

// describe names what a node holds, for "got ..." in errors. Long values are cut.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	switch n.ShortTag() {
	case "!!null":
		return "an empty value"
	case "!!str":
		return strconv.Quote(v)
	case "!!int", "!!float", "!!bool":
		return v
	}
	// A tag may hold any byte (%0A decodes to a newline): escape it, so that
	// an error stays one line (FuzzParse found "!%0A").
	tag := strings.Trim(strconv.Quote(n.ShortTag()), `"`)
	return fmt.Sprintf("%s %s", tag, strconv.Quote(v))
}

// quoteList renders ["a","b","c"] as `"a", "b" or "c"`.
func quoteList(values []string, conj string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " " + conj + " " + q[len(q)-1]
}
