package policy

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.err from what Parse says")

// schemaOptions are the options the testdata files are checked with.
var schemaOptions = Options{APIUser: "svc_safeperm", CPMs: []string{"CPM_EU"}}

// loaderOnly are the invalid files that only the loader refuses: what they
// break is beyond a JSON Schema (a relation between rules, the API user
// given on the command line, names that are valid strings but members
// safeperm must never change) or is a YAML distinction JSON does not keep.
// Every other invalid file must be refused by the schema too, and every
// valid file accepted by both.
var loaderOnly = map[string]string{
	"loader-only-duplicate-names.yaml": "rule names must be unique ignoring case: a relation between rules",
	"loader-only-api-user.yaml":        "the API user comes from --user, not from the file",
	"loader-only-builtin-member.yaml":  "built-in Vault users are valid member names",
	"loader-only-cpm-member.yaml":      "CPM users come from --cpm and from every rule's managedBy",
	"loader-only-copy-self.yaml":       "copyFrom and member compared ignoring case: a relation between keys",
	"loader-only-version-float.yaml":   "1.0 is a float in YAML but equals 1 in JSON",
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(filepath.Join("..", "..", "docs", "policy.schema.json"))
	if err != nil {
		t.Fatalf("compile docs/policy.schema.json: %v", err)
	}
	return sch
}

// schemaValidate converts the YAML to JSON as an editor does and validates
// it. A file that is not YAML, or has duplicate keys, cannot be converted:
// that counts as refused.
func schemaValidate(sch *jsonschema.Schema, data []byte) error {
	var v any
	if err := yaml.UnmarshalWithOptions(data, &v, yaml.UseOrderedMap()); err != nil {
		return err
	}
	js, err := yaml.MarshalWithOptions(v, yaml.JSON())
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

func TestSchemaAgreesWithLoader(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	valid, _ := filepath.Glob(filepath.Join("testdata", "valid", "*.yaml"))
	invalid, _ := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if len(valid) < 5 || len(invalid) < 30 {
		t.Fatalf("found %d valid and %d invalid files", len(valid), len(invalid))
	}
	for _, file := range valid {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(data, file, schemaOptions); err != nil {
			t.Errorf("%s: the loader refuses a valid file:\n%v", file, err)
		}
		if err := schemaValidate(sch, data); err != nil {
			t.Errorf("%s: the schema refuses a valid file: %v", file, err)
		}
	}
	seenLoaderOnly := 0
	for _, file := range invalid {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, perr := Parse(data, file, schemaOptions)
		if perr == nil {
			t.Errorf("%s: the loader accepts an invalid file", file)
			continue
		}
		golden := strings.TrimSuffix(file, ".yaml") + ".err"
		if *update {
			if err := os.WriteFile(golden, []byte(perr.Error()+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Errorf("%s: %v (run go test -run TestSchemaAgreesWithLoader -update to write it)", file, err)
		} else if got := perr.Error() + "\n"; got != string(want) {
			t.Errorf("%s: the loader says\n%s\nwant (%s)\n%s", file, got, golden, want)
		}
		serr := schemaValidate(sch, data)
		if why, ok := loaderOnly[filepath.Base(file)]; ok {
			seenLoaderOnly++
			if serr != nil {
				t.Errorf("%s is marked loader-only (%s), but the schema refuses it too: %v", file, why, serr)
			}
			continue
		}
		if serr == nil {
			t.Errorf("%s: the schema accepts a file the loader refuses:\n%v", file, perr)
		}
	}
	if seenLoaderOnly != len(loaderOnly) {
		t.Errorf("%d of the %d loader-only files exist", seenLoaderOnly, len(loaderOnly))
	}
}

// The schema names the same keys and permissions as the loader, and
// describes every property for editors.
func TestSchemaMatchesKeys(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "policy.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties map[string]struct {
			Description string `json:"description"`
		} `json:"properties"`
		Defs struct {
			Rule struct {
				Properties map[string]struct {
					Description string `json:"description"`
				} `json:"properties"`
			} `json:"rule"`
			Permission struct {
				Enum []string `json:"enum"`
			} `json:"permission"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	check := func(what string, props map[string]struct {
		Description string `json:"description"`
	}, keys []string) {
		if len(props) != len(keys) {
			t.Errorf("%s: the schema has %d properties, the loader %d keys", what, len(props), len(keys))
		}
		for _, k := range keys {
			if p, ok := props[k]; !ok || p.Description == "" {
				t.Errorf("%s: key %q missing from the schema or without a description", what, k)
			}
		}
	}
	check("top level", s.Properties, topKeys)
	check("rule", s.Defs.Rule.Properties, ruleKeys)
	if got, want := strings.Join(s.Defs.Permission.Enum, ","), strings.Join(pam.PermissionNames(), ","); got != want {
		t.Errorf("schema permissions %s, want %s", got, want)
	}
}
