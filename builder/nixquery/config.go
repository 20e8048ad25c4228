package nixquery

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// Config is what of Nix's configuration the command uses.
type Config struct {
	TrustedPublicKeys []string // trusted-public-keys
	NetrcFile         string   // netrc-file
}

// Config asks Nix for its settings: `nix config show --json`, or `nix
// show-config --json` where that is unknown (before Nix 2.20). Nix knows
// its nix.conf, includes, NIX_CONFIG and defaults better than a parser
// here could.
func (n Nix) Config(ctx context.Context) (Config, error) {
	run := func(args ...string) (string, error) {
		args = append([]string{"--extra-experimental-features", "nix-command"}, args...)
		cmd := exec.CommandContext(ctx, n.Tool("nix"), args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("nix %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return string(out), nil
	}
	out, err := run("config", "show", "--json")
	if err != nil {
		out, err = run("show-config", "--json")
	}
	if err != nil {
		return Config{}, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return Config{}, fmt.Errorf("nix show-config --json: %w", err)
	}
	// Each setting is {"value": ...} with its description, or the value.
	value := func(name string, v any) {
		data, ok := raw[name]
		if !ok {
			return
		}
		var wrapped struct{ Value json.RawMessage }
		if json.Unmarshal(data, &wrapped) == nil && wrapped.Value != nil {
			data = wrapped.Value
		}
		_ = json.Unmarshal(data, v)
	}
	var c Config
	value("trusted-public-keys", &c.TrustedPublicKeys)
	value("netrc-file", &c.NetrcFile)
	return c, nil
}
