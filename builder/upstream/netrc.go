package upstream

import (
	"fmt"
	"os"
	"strings"
)

// netrcEntry is one machine (or the default, machine "") of a netrc file.
type netrcEntry struct {
	machine, login, password string
}

// readNetrc parses a netrc file as curl does for Nix's netrc-file: tokens
// separated by white space, "machine NAME" or "default" starting an entry,
// "login" and "password" in it; "account" and "macdef" are skipped. A
// missing file is no credentials. Errors never show the file's content.
func readNetrc(name string) ([]netrcEntry, error) {
	data, err := os.ReadFile(name)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netrc: %w", err)
	}
	var out []netrcEntry
	lines := strings.Split(string(data), "\n")
	var toks []string
	for i := 0; i < len(lines); i++ {
		f := strings.Fields(lines[i])
		if len(f) > 0 && f[0] == "macdef" {
			// A macro runs to the next empty line.
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			}
			continue
		}
		toks = append(toks, f...)
	}
	cur := -1
	for i := 0; i < len(toks); i++ {
		arg := func() (string, error) {
			if i+1 >= len(toks) {
				return "", fmt.Errorf("netrc %s: %q without a value", name, toks[i])
			}
			i++
			return toks[i], nil
		}
		switch toks[i] {
		case "machine":
			m, err := arg()
			if err != nil {
				return nil, err
			}
			out = append(out, netrcEntry{machine: m})
			cur = len(out) - 1
		case "default":
			out = append(out, netrcEntry{})
			cur = len(out) - 1
		case "login", "password", "account":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			if cur < 0 {
				return nil, fmt.Errorf("netrc %s: %q before any machine", name, toks[i-1])
			}
			switch toks[i-1] {
			case "login":
				out[cur].login = v
			case "password":
				out[cur].password = v
			}
		default:
			return nil, fmt.Errorf("netrc %s: unexpected token (not machine, default, login, password, account or macdef)", name)
		}
	}
	return out, nil
}

// credentials returns the netrc login for host: its machine entry, else
// the default one.
func (c *Client) credentials(host string) (login, password string, ok bool) {
	var def *netrcEntry
	for i, e := range c.netrc {
		if e.machine == host {
			return e.login, e.password, true
		}
		if e.machine == "" && def == nil {
			def = &c.netrc[i]
		}
	}
	if def != nil {
		return def.login, def.password, true
	}
	return "", "", false
}
