// Package vmtests holds the NixOS VM tests of mkBinaryCache (default.nix)
// and their local twin (this file): the same scenario (scenario.json), with
// Linux namespaces instead of virtual machines, so that it runs wherever Nix
// runs as root, without nixpkgs.
//
//   - host1 is this machine: its real store builds the caches with
//     `nix-build --option sandbox true` and runs server.prepare. It serves
//     the caches over HTTP from a network namespace of its own, so that no
//     traffic touches the host's network.
//   - host2 is a fresh machine: a network namespace joined to host1's by a
//     veth pair, a private mount namespace with empty tmpfs file systems on
//     /nix (its own store and database), /tmp, /root and /etc/nix (its own
//     nix.conf, with max-jobs = 0: it can only substitute), and a PID
//     namespace with its own /proc. host2 runs each Nix version of the
//     matrix (nixtest.Versions): the host's own, or a newer one chrooted
//     into its Debian root file system.
//
// Each version and compression gets its own pair of hosts. Every namespace,
// mount and server goes away in t.Cleanup, and host1's store is checked to
// be untouched by host2.
package vmtests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// The test binary doubles as host1's HTTP server: started with serveEnv set
// (inside host1's network namespace), it serves the directory rootEnv on the
// address serveEnv until its stdin closes.
const (
	serveEnv = "MKBINARYCACHE_TWIN_SERVE"
	rootEnv  = "MKBINARYCACHE_TWIN_ROOT"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(serveEnv); addr != "" {
		os.Exit(serve(addr, os.Getenv(rootEnv)))
	}
	os.Exit(m.Run())
}

func serve(addr, root string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The parent holds our stdin: when it goes away (even killed), so do we.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Println("listening on", ln.Addr())
	srv := &http.Server{Handler: http.FileServer(http.Dir(root)), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
	return 1
}

// scenario is vmtests/scenario.json; see its "about".
type scenario struct {
	About        []string `json:"about"`
	Placeholders struct {
		Server map[string]string `json:"server"`
		Client map[string]string `json:"client"`
	} `json:"placeholders"`
	Server struct {
		Prepare []step `json:"prepare"`
	} `json:"server"`
	Cases []struct {
		Name       string   `json:"name"`
		About      string   `json:"about"`
		Transports []string `json:"transports"`
		Steps      []step   `json:"steps"`
	} `json:"cases"`
}

type step struct {
	Name        string   `json:"name"`
	Run         string   `json:"run"`
	Expect      string   `json:"expect"`
	Contains    []string `json:"contains"`
	ContainsAny []string `json:"containsAny"`
	LastLine    *string  `json:"lastLine"`
}

func loadScenario(t *testing.T) *scenario {
	t.Helper()
	data, err := os.ReadFile("scenario.json")
	if err != nil {
		t.Fatal(err)
	}
	var s scenario
	dec := json.NewDecoder(bytes.NewReader(data))
	// A field the harness does not know is one it would silently ignore.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("scenario.json: %v", err)
	}
	if len(s.Server.Prepare) == 0 || len(s.Cases) == 0 {
		t.Fatal("scenario.json: no server.prepare steps or no cases")
	}
	for _, c := range s.Cases {
		for _, st := range c.Steps {
			if st.Expect != "success" && st.Expect != "failure" {
				t.Fatalf("scenario.json: case %s, step %q: expect is %q", c.Name, st.Name, st.Expect)
			}
		}
	}
	return &s
}

var leftover = regexp.MustCompile(`@[A-Z_]+@`)

// subst replaces the placeholders; one left over is a harness bug.
func subst(t *testing.T, text string, values map[string]string) string {
	t.Helper()
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		text = strings.ReplaceAll(text, k, values[k])
	}
	if left := leftover.FindAllString(text, -1); left != nil {
		t.Fatalf("placeholders %v left in %q", left, text)
	}
	return text
}

// checkPlaceholders fails if the harness supplies a placeholder that
// scenario.json does not document (a typo, or a drifted harness).
func checkPlaceholders(t *testing.T, documented, values map[string]string) {
	t.Helper()
	for k := range values {
		if _, ok := documented[k]; !ok {
			t.Fatalf("harness supplies %s, which scenario.json does not document", k)
		}
	}
}

// runner runs `sh -c CMD 2>&1` on a host, returning the output and whether
// it exited 0.
type runner func(cmd string) (out string, ok bool, err error)

// runStep runs one step and judges it as scenario.json's "about" says.
func runStep(t *testing.T, host string, run runner, st step, values map[string]string) bool {
	t.Helper()
	cmd := subst(t, st.Run, values)
	start := time.Now()
	out, ok, err := run(cmd)
	if err != nil {
		t.Fatalf("%s: step %q: %v", host, st.Name, err)
	}
	var problems []string
	if ok != (st.Expect == "success") {
		problems = append(problems, fmt.Sprintf("exit status %s, expected %s", map[bool]string{true: "0", false: "non-zero"}[ok], st.Expect))
	}
	for _, w := range st.Contains {
		if w = subst(t, w, values); !strings.Contains(out, w) {
			problems = append(problems, fmt.Sprintf("output lacks %q", w))
		}
	}
	if len(st.ContainsAny) > 0 {
		found := ""
		var anyOf []string
		for _, w := range st.ContainsAny {
			w = subst(t, w, values)
			anyOf = append(anyOf, w)
			if found == "" && strings.Contains(out, w) {
				found = w
			}
		}
		if found == "" {
			problems = append(problems, fmt.Sprintf("output has none of %q", anyOf))
		} else {
			// Which wording this Nix version uses, for scenario.json's notes.
			t.Logf("%s: step %q: output has %q", host, st.Name, found)
		}
	}
	if st.LastLine != nil {
		want := subst(t, *st.LastLine, values)
		if last := lastLine(out); last != want {
			problems = append(problems, fmt.Sprintf("last line is %q, expected %q", last, want))
		}
	}
	if len(problems) > 0 {
		t.Errorf("%s: step %q failed: %s\n$ %s\n%s", host, st.Name, strings.Join(problems, "; "), cmd, out)
		return false
	}
	t.Logf("%s: %s: ok (%v)", host, st.Name, time.Since(start).Round(time.Millisecond))
	return true
}

func lastLine(out string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			return lines[i]
		}
	}
	return ""
}

// combined runs cmd and returns its combined output; a non-zero exit is not
// an error, failing to start is.
func combined(cmd *exec.Cmd) (string, bool, error) {
	out, err := proc.CombinedOutput(cmd, proc.Timeout)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return string(out), false, err
	}
	return string(out), err == nil, nil
}

// cleanEnv is the environment of the test, less what would make a Nix
// command look past its own host (NIX_CONFIG, NIX_REMOTE, ...) or share
// host1's ~/.cache/nix (the narinfo cache of http:// substituters).
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NIX_") || strings.HasPrefix(kv, "XDG_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// host1Run runs a step on host1: the real host, its store and network.
func host1Run(cmd string) (string, bool, error) {
	c := exec.Command("sh", "-c", cmd+" 2>&1")
	c.Env = cleanEnv("HOME=" + os.Getenv("HOME"))
	return combined(c)
}

// namePrefix names this process's namespaces, so that leftovers of a
// killed run can be told apart and removed by a later one.
const namePrefix = "mkbc-twin-"

// pruneNetns deletes namespaces left behind by earlier test processes that
// are gone (e.g. killed by go test's timeout before their cleanups ran).
func pruneNetns(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], namePrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(fields[0], namePrefix), "-", 2)[0])
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			exec.Command("ip", "netns", "del", fields[0]).Run() // best effort
		}
	}
}

func must(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// network makes host1's and host2's network namespaces, joined by a veth
// pair created inside them (it never exists in the host's namespace), with
// 10.231.<subnet>.1/30 for host1 and .2 for host2. The namespaces (and with
// them the veth pair) are deleted at cleanup.
func network(t *testing.T, tag string, subnet int) (ns1, ns2, addr1 string) {
	t.Helper()
	base := fmt.Sprintf("%s%d-%s-", namePrefix, os.Getpid(), tag)
	ns1, ns2 = base+"host1", base+"host2"
	for _, ns := range []string{ns1, ns2} {
		must(t, "ip", "netns", "add", ns)
		ns := ns
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
	}
	must(t, "ip", "link", "add", "name", "eth-host1", "netns", ns1, "type", "veth", "peer", "name", "eth-host2", "netns", ns2)
	addr1 = fmt.Sprintf("10.231.%d.1", subnet)
	for i, ns := range []string{ns1, ns2} {
		dev := fmt.Sprintf("eth-host%d", i+1)
		must(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("10.231.%d.%d/30", subnet, i+1), "dev", dev)
		must(t, "ip", "-n", ns, "link", "set", dev, "up")
		must(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	return ns1, ns2, addr1
}

// startServer serves dir over HTTP on addr:80 from inside ns (host1's
// network namespace), until cleanup.
func startServer(t *testing.T, ns, addr, dir string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), serveEnv+"="+net.JoinHostPort(addr, "80"), rootEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := readLine(stdout, cmd, "the HTTP server in "+ns)
	if err != nil || !strings.HasPrefix(line, "listening") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("HTTP server in %s did not start: %q %v\n%s", ns, line, err, stderr.String())
	}
}

// host2Setup makes the fresh machine: in network namespace ns, a private
// mount namespace with its own /nix, /tmp, home and /etc/nix, and a PID
// namespace with its own /proc, held by a sleeping PID 1 whose namespaces
// each step then enters. Without its own PID namespace, host2's
// `nix-store --delete` would see other processes' command lines naming the
// path (runtime GC roots), e.g. another subtest's `nix-store --realise`.
//
// With a root file system ($1, for a newer Nix), all of that happens inside
// it, with /dev and /sys bound from the host, and PID 1 sleeps chrooted
// there, so that the steps (nsenter --root) run that rootfs's Nix.
const host2Setup = `set -e
# Our PID as host1 sees it, for nsenter: the redirection makes /proc/self this shell.
while read -r key outer inner; do [ "$key" = NSpid: ] && hostpid=$outer; done < /proc/self/status
[ -n "$hostpid" ]
r=$1
mount -t proc proc "$r/proc"
if [ -n "$r" ]; then
	mount --rbind /dev "$r/dev"
	mount --rbind /sys "$r/sys"
fi
# mode 755: Nix 2.34 refuses a world-writable /nix.
for d in /nix /tmp /root /etc/nix; do mount -t tmpfs -o mode=0755 tmpfs "$r$d"; done
chmod 1777 "$r/tmp"
mkdir -p "$r/nix/store" "$r/nix/var/nix"
cat > "$r/etc/nix/nix.conf" <<'EOF'
build-users-group =
substituters =
max-jobs = 0
EOF
# Ready only once chrooted: nsenter --root takes PID 1's root as it is then.
exec chroot "${r:-/}" sh -c 'echo "ready $0" && exec sleep infinity' "$hostpid"`

type host2 struct {
	pid    int      // of host2's PID 1, in host1's PID namespace
	chroot bool     // in a root file system with a newer Nix
	env    []string // of its commands there (PATH first)
}

func startHost2(t *testing.T, ns, root string) *host2 {
	t.Helper()
	if fi, err := os.Stat("/etc/nix"); err != nil || !fi.IsDir() {
		t.Fatalf("/etc/nix is not a directory (%v): host2 mounts its own nix.conf over it", err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns,
		"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
		"sh", "-c", host2Setup, "sh", root)
	cmd.Dir = "/"
	// Should the test process die before its cleanups, unshare dies too,
	// and takes host2's PID 1 along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// ip execs unshare, which waits for host2's PID 1 and takes it along
	// when killed (--kill-child); with PID 1 go the PID namespace, the mount
	// namespace and its tmpfs file systems.
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := readLine(stdout, cmd, "host2's setup in "+ns)
	var pid int
	if err == nil {
		_, err = fmt.Sscanf(line, "ready %d\n", &pid)
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("host2 setup failed: %q %v\n%s", line, err, stderr.String())
	}
	return &host2{pid: pid, chroot: root != ""}
}

func (h *host2) command(name string, args ...string) *exec.Cmd {
	c := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(h.pid), "--mount", "--net", "--pid", "--root", "--wd", name}, args...)...)
	c.Dir = "/"
	c.Env = cleanEnv("HOME=/root")
	c.Env = append(c.Env, h.env...)
	return c
}

func (h *host2) run(cmd string) (string, bool, error) {
	return combined(h.command("sh", "-c", cmd+" 2>&1"))
}

// copyTo copies the directory src of host1 to dst on host2, as `scp -r`
// does between the VMs.
func (h *host2) copyTo(t *testing.T, src, dst string) {
	t.Helper()
	tar := exec.Command("tar", "-C", src, "-cf", "-", ".")
	untar := h.command("sh", "-c", `mkdir -p "$1" && tar -C "$1" -xf -`, "sh", dst)
	// An os.Pipe, not StdoutPipe: tar is waited for by proc, whose Wait
	// would close a StdoutPipe under untar.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	tar.Stdout, untar.Stdin = pw, pr
	// One buffer per command: os/exec copies into a shared writer from one
	// goroutine only within a Cmd.
	var tarErr, untarOut bytes.Buffer
	tar.Stderr = &tarErr
	untar.Stdout, untar.Stderr = &untarOut, &untarOut
	tarProc := proc.Start(t, tar, "tar of "+src)
	pw.Close() // tar has its own copy; untar sees the end when tar exits
	uerr := proc.Run(untar, proc.Timeout)
	pr.Close()
	if terr := tarProc.Wait(t, proc.Timeout); terr != nil || uerr != nil {
		t.Fatalf("copy %s to host2:%s: tar %v, untar %v\n%s%s", src, dst, terr, uerr, tarErr.String(), untarOut.String())
	}
}

// pathState is what host2 must not change in host1's store.
type pathState struct {
	ino   uint64
	valid bool
}

func storeState(t *testing.T, paths []string) map[string]pathState {
	t.Helper()
	st := map[string]pathState{}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("host1: %v", err)
		}
		valid := exec.Command("nix-store", "--check-validity", p).Run() == nil
		st[p] = pathState{ino: fi.Sys().(*syscall.Stat_t).Ino, valid: valid}
	}
	return st
}

var compressions = []string{"none", "xz", "bzip2", "zstd"}

// newerCompressions are those the newer Nix versions substitute here: the
// two that matter (zstd, nixpkgs' default; xz, Nix's own), to keep the
// matrix within CI's time. Every case of scenario.json runs with each.
var newerCompressions = []string{"xz", "zstd"}

// cachesExpr builds the fixture's hello and one mkBinaryCache of it per
// compression, exactly as a user of nix/default.nix would.
const cachesExpr = `{ repo, busybox, builderDir }:
let
  fixture = import (repo + "/testdata/fixture.nix") { inherit busybox; };
  cacheLib = import (repo + "/nix") {
    builder = builtins.path { path = builderDir; name = "mkbinarycache"; };
  };
in
{
  inherit (fixture) hello;
  helloDrv = fixture.hello.drvPath;
  caches = builtins.listToAttrs (map (compression: {
    name = compression;
    value = cacheLib.mkBinaryCache { rootPaths = [ fixture.hello ]; inherit compression; };
  }) cacheLib.compressions);
}
`

func TestTwoHosts(t *testing.T) {
	nixtest.Require(t)
	for _, tool := range []string{"ip", "unshare", "nsenter", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (install iproute2/util-linux): %v", tool, err)
		}
	}
	sc := loadScenario(t)
	pruneNetns(t)

	// host1 builds everything first: one evaluation, four sandboxed builds.
	start := time.Now()
	repo := nixtest.RepoRoot(t)
	bbDir := nixtest.BusyboxDir(t)
	binDir := nixtest.BuildBinary(t)
	fx := nixtest.BuildFixture(t)
	exprFile := filepath.Join(t.TempDir(), "caches.nix")
	if err := os.WriteFile(exprFile, []byte(cachesExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{exprFile, "--arg", "repo", repo, "--arg", "busybox", bbDir, "--arg", "builderDir", binDir}
	buildArgs := append(append([]string{}, args...), "--option", "sandbox", "true", "--no-out-link", "-A", "hello")
	for _, c := range compressions {
		buildArgs = append(buildArgs, "-A", "caches."+c)
	}
	paths := strings.Fields(nixtest.Run(t, "nix-build", buildArgs...))
	if len(paths) != 1+len(compressions) {
		t.Fatalf("nix-build printed %q, want hello and %d caches", paths, len(compressions))
	}
	root := paths[0]
	if root != fx.Hello {
		t.Fatalf("hello is %s here but %s in nixtest's fixture", root, fx.Hello)
	}
	drv := nixtest.Run(t, "nix-instantiate", append(append([]string{}, args...), "--eval", "--json", "-A", "helloDrv")...)
	if err := json.Unmarshal([]byte(drv), &drv); err != nil {
		t.Fatalf("helloDrv: %v", err)
	}
	t.Logf("host1: built hello and %d caches in %v", len(compressions), time.Since(start).Round(time.Millisecond))

	pubkey, err := os.ReadFile("test-key-1.pub")
	if err != nil {
		t.Fatal(err)
	}
	seckey, err := filepath.Abs("test-key-1.sec")
	if err != nil {
		t.Fatal(err)
	}

	cacheOf := map[string]string{}
	for i, c := range compressions {
		cacheOf[c] = paths[1+i]
	}
	for vi, v := range nixtest.Versions(t) {
		t.Run("nix-"+v.Name, func(t *testing.T) {
			t.Parallel()
			v.Require(t)
			comps := compressions
			// An opt-in extra version gets every compression: it runs by hand.
			if !v.Host() && !v.Extra {
				comps = newerCompressions
			}
			for i, compression := range comps {
				t.Run(compression, func(t *testing.T) {
					t.Parallel()
					twin(t, sc, twinParams{
						version:     v,
						subnet:      vi*len(compressions) + i + 1,
						root:        root,
						drv:         drv,
						closure:     fx.Closure,
						cache:       cacheOf[compression],
						compression: compression,
						pubkey:      strings.TrimSpace(string(pubkey)),
						seckey:      seckey,
						mkbinary:    filepath.Join(binDir, "bin", "mkbinarycache"),
					})
				})
			}
		})
	}
}

type twinParams struct {
	version                       nixtest.Version // host2's
	subnet                        int
	root, drv, cache, compression string
	pubkey, seckey, mkbinary      string
	closure                       []string
}

func twin(t *testing.T, sc *scenario, p twinParams) {
	start := time.Now()
	work1 := t.TempDir()
	watched := append(append([]string{}, p.closure...), p.cache)
	before := storeState(t, watched)
	for _, q := range p.closure {
		if !before[q].valid {
			t.Fatalf("host1: %s is not valid before the test", q)
		}
	}

	// host1: check the cache and sign a copy.
	server := map[string]string{
		"@ROOT@":          p.root,
		"@CACHE@":         p.cache,
		"@COMPRESSION@":   p.compression,
		"@WORK@":          work1,
		"@SECKEY@":        p.seckey,
		"@MKBINARYCACHE@": p.mkbinary,
	}
	checkPlaceholders(t, sc.Placeholders.Server, server)
	for _, st := range sc.Server.Prepare {
		if !runStep(t, "host1", host1Run, st, server) {
			t.FailNow()
		}
	}

	// The machines.
	ns1, ns2, addr1 := network(t, p.version.Name+"-"+p.compression, p.subnet)
	www := t.TempDir()
	for name, target := range map[string]string{"cache": p.cache, "signed": filepath.Join(work1, "signed")} {
		if err := os.Symlink(target, filepath.Join(www, name)); err != nil {
			t.Fatal(err)
		}
	}
	startServer(t, ns1, addr1, www)
	h2 := startHost2(t, ns2, p.version.Root)
	h2.env = p.version.Env

	// host2 really is another machine: its /nix is its own, empty tmpfs, its
	// nix.conf says max-jobs = 0, it runs the Nix version under test, and it
	// reaches host1 over the veth pair.
	guard := fmt.Sprintf(`test "$(stat -f -c %%T /nix/store)" = tmpfs && test -z "$(ls -A /nix/store)" && test ! -e %s && nix --extra-experimental-features nix-command show-config | grep -qx 'max-jobs = 0' && nix --version && echo fresh-host`, p.root)
	if out, ok, err := h2.run(guard); err != nil || !ok || lastLine(out) != "fresh-host" || !strings.Contains(out, p.version.Full+"\n") {
		t.Fatalf("host2 is not a fresh host of %s (%v):\n%s", p.version.Full, err, out)
	}
	baseURL := "http://" + addr1
	// busybox from host1's file system, in host2's network namespace: a
	// root file system has no HTTP client but Nix.
	if out, err := exec.Command("ip", "netns", "exec", ns2, "busybox", "wget", "-q", "-O", "-", baseURL+"/cache/nix-cache-info").CombinedOutput(); err != nil || !strings.Contains(string(out), "StoreDir: /nix/store") {
		t.Fatalf("host2 cannot fetch %s/cache/nix-cache-info (%v):\n%s", baseURL, err, out)
	}

	// Publish by copying the files, as scp -r does between the VMs.
	h2.copyTo(t, p.cache, "/tmp/cache")
	h2.copyTo(t, filepath.Join(work1, "signed"), "/tmp/signed-cache")
	t.Logf("host1/host2 set up in %v", time.Since(start).Round(time.Millisecond))

	transports := []struct {
		name string
		urls map[string]string
	}{
		{"file", map[string]string{
			"@URL@":          "file:///tmp/cache",
			"@SIGNED_URL@":   "file:///tmp/signed-cache",
			"@CACHE@":        "/tmp/cache",
			"@SIGNED_CACHE@": "/tmp/signed-cache",
		}},
		{"http", map[string]string{
			"@URL@":        baseURL + "/cache",
			"@SIGNED_URL@": baseURL + "/signed",
		}},
	}
	ran := 0
	for _, tr := range transports {
		for _, c := range sc.Cases {
			if !contains(c.Transports, tr.name) {
				continue
			}
			ran++
			work := fmt.Sprintf("/tmp/work/%s-%s", tr.name, c.Name)
			t.Run(tr.name+"/"+c.Name, func(t *testing.T) {
				caseStart := time.Now()
				if out, ok, err := h2.run("rm -rf " + work + " && mkdir -p " + work); err != nil || !ok {
					t.Fatalf("host2: make %s: %v\n%s", work, err, out)
				}
				client := map[string]string{
					"@ROOT@":        p.root,
					"@DRV@":         p.drv,
					"@COMPRESSION@": p.compression,
					"@PUBKEY@":      p.pubkey,
					"@WORK@":        work,
				}
				for k, v := range tr.urls {
					client[k] = v
				}
				checkPlaceholders(t, sc.Placeholders.Client, client)
				for _, st := range c.Steps {
					if !runStep(t, "host2", h2.run, st, client) {
						return
					}
				}
				if c.Name == "substitute" {
					checkClosure(t, h2, p.root, p.closure)
				}
				t.Logf("%s/%s: %v", tr.name, c.Name, time.Since(caseStart).Round(time.Millisecond))
			})
		}
	}
	if ran == 0 {
		t.Fatal("no case of scenario.json ran")
	}

	// host2 changed nothing in host1's store.
	after := storeState(t, watched)
	for _, q := range watched {
		if before[q] != after[q] {
			t.Errorf("host1: %s changed: %+v before, %+v after", q, before[q], after[q])
		}
	}
	t.Logf("Nix %s, %s: %v in all", p.version.Name, p.compression, time.Since(start).Round(time.Millisecond))
}

// checkClosure checks that host2 now has exactly host1's closure of root,
// valid and intact, and that root's program runs there.
func checkClosure(t *testing.T, h2 *host2, root string, closure []string) {
	t.Helper()
	out, ok, err := h2.run("nix-store --query --requisites " + root)
	if err != nil || !ok {
		t.Fatalf("host2: query closure: %v\n%s", err, out)
	}
	got := strings.Fields(out)
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(closure, " ") {
		t.Errorf("host2's closure of %s is %q, host1's is %q", root, got, closure)
	}
	script := "set -e; for p in " + strings.Join(closure, " ") + `; do nix-store --check-validity "$p"; nix-store --verify-path "$p"; done; ` + root + "/bin/hello"
	out, ok, err = h2.run(script)
	if err != nil || !ok || !strings.Contains(out, "Hello from libgreet!") {
		t.Errorf("host2: closure not valid and intact, or hello does not run (%v):\n%s", err, out)
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

// readLine reads the first line a starting process prints, at most
// proc.Timeout: past it the process is killed (which ends the read) and the
// error names what did not start.
func readLine(r io.Reader, cmd *exec.Cmd, what string) (string, error) {
	timer := time.AfterFunc(proc.Timeout, func() { cmd.Process.Kill() })
	line, err := bufio.NewReader(r).ReadString('\n')
	if !timer.Stop() {
		return line, fmt.Errorf("%s printed no line within %v: killed", what, proc.Timeout)
	}
	return line, err
}
