// Command schemacheck checks generated Grafana files strictly against Grafana's own schema
// types (grafana-foundation-sdk): strict unmarshalling (unknown fields, wrong types, missing
// required fields) followed by the types' Validate() constraints.
//
// Usage: schemacheck FILE...
//
// Each FILE is JSON: a dashboard, or an alert-rule provisioning file (its YAML turned into JSON
// as is). It prints one line per failing file and exits 1 if any fails, 2 on bad usage.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/alerting"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/expr"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: schemacheck FILE...")
		os.Exit(2)
	}
	// Panel options, field configs and expression queries are typed per plugin: without the
	// registry they would be decoded as untyped maps and never checked.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		if err := checkFile(path); err != nil {
			fmt.Printf("%s: %s\n", path, strings.ReplaceAll(err.Error(), "\n", "; "))
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// checkFile tells the kind of file by its content, not its name, so any generated file fits.
func checkFile(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	switch {
	case top["groups"] != nil:
		return checkRuleFile(raw)
	case top["panels"] != nil || top["schemaVersion"] != nil:
		return checkDashboard(raw)
	}
	return errors.New("neither a dashboard (panels, schemaVersion) nor an alert-rule provisioning file (groups)")
}

// failure turns the SDK's typed-nil or empty cog.BuildErrors into a plain nil: the SDK returns
// one even on success, so `err != nil` alone would fail every file.
func failure(err error) error {
	var errs cog.BuildErrors
	if errors.As(err, &errs) && len(errs) == 0 {
		return nil
	}
	return err
}

// strictType is what every SDK resource type offers.
type strictType interface {
	UnmarshalJSONStrict(raw []byte) error
	Validate() error
}

func strictCheck(target strictType, raw []byte) error {
	if err := failure(target.UnmarshalJSONStrict(raw)); err != nil {
		return err
	}
	return failure(target.Validate())
}

// The SDK's union types (PanelOrRowPanel, expr.Expr) return their typed-nil error before storing
// the decoded variant, so the parent's Validate() never sees panels or expressions. The checks
// below decode those variants directly, picking them by the same discriminator the SDK uses.

func checkDashboard(raw []byte) error {
	if err := strictCheck(&dashboard.Dashboard{}, raw); err != nil {
		return err
	}
	var board struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &board); err != nil {
		return err
	}
	var errs cog.BuildErrors
	for i, panel := range board.Panels {
		var target strictType = &dashboard.Panel{}
		if discriminator(panel) == "row" {
			target = &dashboard.RowPanel{}
		}
		if err := strictCheck(target, panel); err != nil {
			errs = append(errs, cog.MakeBuildErrors("panels["+strconv.Itoa(i)+"]", err)...)
		}
	}
	return failure(errs)
}

func discriminator(raw json.RawMessage) string {
	var value struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &value) // The strict pass already rejected malformed input.
	return value.Type
}

// ruleFile is Grafana's alert-rule provisioning file. Its rules are the API's alerting.Rule
// minus orgID, folderUID and ruleGroup, which they inherit from their group.
type ruleFile struct {
	APIVersion int64           `json:"apiVersion"`
	Groups     []ruleFileGroup `json:"groups"`
}

type ruleFileGroup struct {
	OrgID    int64                        `json:"orgId"`
	Name     string                       `json:"name"`
	Folder   string                       `json:"folder"`
	Interval string                       `json:"interval"`
	Rules    []map[string]json.RawMessage `json:"rules"`
}

func checkRuleFile(raw []byte) error {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	var file ruleFile
	if err := decoder.Decode(&file); err != nil {
		return fmt.Errorf("alert-rule provisioning file: %w", err)
	}
	if file.APIVersion != 1 {
		return fmt.Errorf("apiVersion: must be 1, got %d", file.APIVersion)
	}
	var errs cog.BuildErrors
	for i, group := range file.Groups {
		if err := failure(checkRuleGroup(group)); err != nil {
			errs = append(errs, cog.MakeBuildErrors("groups["+strconv.Itoa(i)+"]", err)...)
		}
	}
	return failure(errs)
}

// checkRuleGroup hands the group to alerting.RuleGroup in the API's shape: title, folderUid,
// interval in seconds, and each rule given the fields it inherits.
func checkRuleGroup(group ruleFileGroup) error {
	if group.Name == "" || group.Folder == "" {
		return cog.MakeBuildErrors("name, folder", errors.New("required"))
	}
	interval, err := time.ParseDuration(group.Interval)
	if err != nil || interval <= 0 || interval%time.Second != 0 {
		return cog.MakeBuildErrors("interval", errors.New("not a positive whole number of seconds"))
	}
	orgID := group.OrgID
	if orgID == 0 {
		orgID = 1 // Grafana's default organisation, as in provisioning.
	}
	inherited := map[string]any{"orgID": orgID, "folderUID": group.Folder, "ruleGroup": group.Name}
	for i, rule := range group.Rules {
		for key, value := range inherited {
			if _, clash := rule[key]; clash {
				path := fmt.Sprintf("rules[%d].%s", i, key)
				return cog.MakeBuildErrors(path, errors.New("set by the group in a provisioning file"))
			}
			rule[key], _ = json.Marshal(value)
		}
	}
	apiGroup, err := json.Marshal(map[string]any{
		"title":     group.Name,
		"folderUid": group.Folder,
		"interval":  int64(interval / time.Second),
		"rules":     group.Rules,
	})
	if err != nil {
		return err
	}
	if err := strictCheck(&alerting.RuleGroup{}, apiGroup); err != nil {
		return err
	}
	var errs cog.BuildErrors
	for i, rule := range group.Rules {
		var data []struct {
			Model json.RawMessage `json:"model"`
		}
		if err := json.Unmarshal(rule["data"], &data); err != nil {
			return err
		}
		for j, query := range data {
			if err := checkExpression(query.Model); err != nil {
				path := fmt.Sprintf("rules[%d].data[%d].model", i, j)
				errs = append(errs, cog.MakeBuildErrors(path, err)...)
			}
		}
	}
	return failure(errs)
}

// checkExpression validates a server-side expression; other queries belong to data source
// plugins the SDK does not type (ClickHouse among them), which the strict pass kept as raw maps.
func checkExpression(model json.RawMessage) error {
	if model == nil {
		return nil // The model is optional in alerting.Query.
	}
	var query struct {
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
	}
	if err := json.Unmarshal(model, &query); err != nil || query.Datasource.Type != "__expr__" {
		return err
	}
	variants := map[string]strictType{
		"classic_conditions": &expr.TypeClassicConditions{},
		"math":               &expr.TypeMath{},
		"reduce":             &expr.TypeReduce{},
		"resample":           &expr.TypeResample{},
		"sql":                &expr.TypeSql{},
		"threshold":          &expr.TypeThreshold{},
	}
	variant, known := variants[discriminator(model)]
	if !known {
		return fmt.Errorf("unknown expression type %q", discriminator(model))
	}
	return strictCheck(variant, model)
}
