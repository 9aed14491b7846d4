// Package configs loads Verge's YAML configuration files strictly and holds one
// sample file per role.
//
// Load decodes a file into a typed struct that the caller has already filled
// with defaults. Decoding is strict: an unknown key, a value of the wrong type,
// a duplicate key or a bad value is an error that names the file, the line and
// the key ("edge.yaml:12: properties[0].max_ttl: bad duration \"1x\""). After
// decoding, a Validate() error method on the struct is called; errors it builds
// with Errorf are reported at the line of the key they name.
//
// Scalars decode into strings, bools, integers, floats, and any type that
// implements encoding.TextUnmarshaler (Duration, Bytes, netip.Prefix, ...).
// Structs use `yaml:"name"` tags; fields without a tag are not configurable.
package configs

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Defaulter is implemented by types that fill in their own defaults. Load
// calls SetDefaults on each new element of a list or map before decoding the
// file's value into it, so items in a list get the same defaults as a
// top-level struct from its constructor.
type Defaulter interface {
	SetDefaults()
}

// Validator is implemented by config structs that check themselves after
// decoding. Errors built with Errorf are reported at their key's line.
type Validator interface {
	Validate() error
}

// Error is a configuration error at a place in a file.
type Error struct {
	File string // file name as given to Load ("" for LoadBytes without a name)
	Line int    // 1-based line, 0 when unknown
	Key  string // dotted key path, e.g. "properties[0].hosts[1]"; "" for the whole file
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FieldError is what Validate implementations return for a bad value; Load
// turns it into an *Error carrying the key's line.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

// Errorf returns a *FieldError for key with a formatted message.
func Errorf(key, format string, args ...any) error {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Key joins a parent key path and a child name ("a" + "b" = "a.b").
func Key(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

// Index appends a sequence index to a key path ("hosts" + 2 = "hosts[2]").
func Index(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// Load reads path and decodes it strictly into dst, a pointer to a struct
// holding defaults. Every error is an errors.Join of *Error values.
func Load(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{File: path, Msg: err.Error()}
	}
	return LoadBytes(path, data, dst)
}

// maxErrors bounds how many problems one file reports.
const maxErrors = 20

// LoadBytes decodes data (named name in errors) strictly into dst.
func LoadBytes(name string, data []byte, dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("configs: Load needs a non-nil pointer, got %T", dst)
	}
	d := &decoder{file: name, lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			// An empty file leaves every default in place.
			return d.validate(rv)
		}
		return d.syntax(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return &Error{File: name, Line: extra.Line, Msg: "more than one YAML document"}
	} else if !errors.Is(err, io.EOF) {
		return d.syntax(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d.decode(root, rv.Elem(), "")
	if len(d.errs) > 0 {
		return errors.Join(d.errs...)
	}
	return d.validate(rv)
}

type decoder struct {
	file  string
	lines map[string]int // key path -> line, for Validate errors
	errs  []error
	depth int
}

// maxDepth bounds nesting (aliases can make a document deeper than its text).
const maxDepth = 32

func (d *decoder) syntax(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, convErr := strconv.Atoi(rest[:i]); convErr == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return &Error{File: d.file, Line: line, Msg: "YAML syntax: " + msg}
}

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	if len(d.errs) < maxErrors {
		d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)})
	}
}

// validate calls Validate on dst (if it has one) and maps field errors to lines.
func (d *decoder) validate(rv reflect.Value) error {
	v, ok := rv.Interface().(Validator)
	if !ok {
		return nil
	}
	err := v.Validate()
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, &Error{File: d.file, Line: d.lineOf(fe.Key), Key: fe.Key, Msg: fe.Msg})
		} else {
			out = append(out, &Error{File: d.file, Msg: e.Error()})
		}
	}
	return errors.Join(out...)
}

// lineOf finds the line of key, or of its nearest parent that was in the file.
func (d *decoder) lineOf(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.lines[key] = n.Line
	if d.depth++; d.depth > maxDepth {
		d.fail(n, key, "nested too deeply")
		d.depth--
		return
	}
	defer func() { d.depth-- }()
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		// "key:" with no value keeps the default.
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), key)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(n, key, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, key)
	case reflect.Map:
		d.decodeMap(n, v, key)
	case reflect.Slice:
		d.decodeSlice(n, v, key)
	case reflect.String:
		if d.scalar(n, key, "a string") {
			v.SetString(n.Value)
		}
	case reflect.Bool:
		if !d.scalar(n, key, "true or false") {
			return
		}
		switch n.Value {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.fail(n, key, "want true or false, got %q", n.Value)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !d.scalar(n, key, "an integer") {
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, v.Type().Bits())
		if err != nil {
			d.fail(n, key, "want an integer, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !d.scalar(n, key, "a non-negative integer") {
			return
		}
		u, err := strconv.ParseUint(n.Value, 0, v.Type().Bits())
		if err != nil {
			d.fail(n, key, "want a non-negative integer, got %q", n.Value)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		if !d.scalar(n, key, "a number") {
			return
		}
		f, err := strconv.ParseFloat(n.Value, v.Type().Bits())
		if err != nil {
			d.fail(n, key, "want a number, got %q", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, key, "configs: unsupported field type %s", v.Type())
	}
}

func (d *decoder) scalar(n *yaml.Node, key, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, key, "want %s, got %s", want, kindName(n))
		return false
	}
	return true
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "want a mapping, got %s", kindName(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name := kn.Value
		fk := Key(key, name)
		if seen[name] {
			d.fail(kn, fk, "duplicate key")
			continue
		}
		seen[name] = true
		idx, ok := fields[name]
		if !ok {
			d.fail(kn, fk, "unknown key (known: %s)", knownKeys(v.Type()))
			continue
		}
		d.lines[fk] = kn.Line
		d.decode(vn, v.FieldByIndex(idx), fk)
		if d.lines[fk] != kn.Line && vn.Kind == yaml.ScalarNode {
			d.lines[fk] = kn.Line
		}
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "want a mapping, got %s", kindName(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.fail(n, key, "configs: map keys must be strings")
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		fk := Key(key, kn.Value)
		if seen[kn.Value] {
			d.fail(kn, fk, "duplicate key")
			continue
		}
		seen[kn.Value] = true
		elem := reflect.New(v.Type().Elem()).Elem()
		if old := v.MapIndex(reflect.ValueOf(kn.Value).Convert(v.Type().Key())); old.IsValid() {
			elem.Set(old)
		} else {
			setDefaults(elem)
		}
		d.decode(vn, elem, fk)
		d.lines[fk] = kn.Line
		v.SetMapIndex(reflect.ValueOf(kn.Value).Convert(v.Type().Key()), elem)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, key, "want a list, got %s", kindName(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, en := range n.Content {
		setDefaults(out.Index(i))
		d.decode(en, out.Index(i), Index(key, i))
	}
	v.Set(out)
}

// setDefaults calls SetDefaults on v (addressable) when its type has it.
func setDefaults(v reflect.Value) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if d, ok := v.Addr().Interface().(Defaulter); ok {
		d.SetDefaults()
	}
}

// structFields maps yaml names to field indexes, following embedded structs
// tagged `yaml:",inline"`.
func structFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !ok || tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, idx := range structFields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			continue
		}
		out[name] = []int{i}
	}
	return out
}

func knownKeys(t reflect.Type) string {
	m := structFields(t)
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
