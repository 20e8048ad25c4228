package nix_test

// The nixpkgs-facing files (package.nix, overlay.nix, vmtests/default.nix)
// need nixpkgs to evaluate, and there is none here. These tests evaluate them
// against a stub of the few parts of nixpkgs' lib and pkgs they use, written
// to behave as nixpkgs' own (callPackage, makeOverridable, setFunctionArgs),
// and check what they decide: which buildGoModule, which CGO setting, the
// callPackage shape of mkBinaryCache, what the VM tests give each host. The
// check phase of package.nix is run as the Nix sandbox would run it.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// stubDrv makes a derivation-like attribute set with a made-up store path.
const stubDrv = `name: extra: {
  type = "derivation";
  inherit name;
  outPath = "/nix/store/" + builtins.substring 0 32 (builtins.hashString "sha256" name) + "-" + name;
  drvPath = "/nix/store/" + builtins.substring 32 32 (builtins.hashString "sha256" name) + "-" + name + ".drv";
  meta.mainProgram = name;
  overrideAttrs = f: stubDrv name (extra // f extra);
} // extra`

// track reads files the Nix evaluations depend on from the test process, so
// that go test's cache knows them (it sees nothing nix-instantiate opens).
func track(t *testing.T, root string, files ...string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.ReadFile(filepath.Join(root, f)); err != nil {
			t.Fatal(err)
		}
	}
}

// evalJSON evaluates expr (with `lib`, `stubDrv` and `repo` in scope) and
// decodes its JSON value into out; it returns nix-instantiate's error output
// when the evaluation fails.
func evalJSON(t *testing.T, expr string, out any) (string, error) {
	t.Helper()
	root := nixtest.RepoRoot(t)
	full := "let lib = import " + root + "/nix/testdata/nixpkgs-stub-lib.nix; stubDrv = " + stubDrv + "; repo = " + root + "; in " + expr
	cmd := exec.Command("nix-instantiate", "--eval", "--strict", "--json", "-E", full)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		return stderr.String(), err
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("decode %s: %v", stdout, err)
	}
	return stderr.String(), nil
}

// goModMinor returns go.mod's `go` line as major.minor.
func goModMinor(t *testing.T) string {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join(nixtest.RepoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

// The license meta.license names is the one in LICENSE.
func TestLicense(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(nixtest.RepoRoot(t), "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MIT License", "Copyright (c) 2026 the mkbinarycache authors"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("LICENSE lacks %q", want)
		}
	}
}

// stubPkgs applies overlay.nix to a stub package set, as `import nixpkgs {
// overlays = [ ... ]; }` would: callPackage from the final set; the build
// platform's packages are a distinct set, to see which one mkBinaryCache uses.
const stubPkgs = `let
    base = final: {
      inherit lib;
      callPackage = lib.callPackageWith final;
      stdenv.buildPlatform.system = "x86_64-linux";
      go = { version = "1.26.3"; };
      buildGoModule = lib.setFunctionArgs (args: stubDrv "${args.pname}-${args.version}" { inherit args; }) { env = true; };
      buildPackages = { mkbinarycache = stubDrv "mkbinarycache-for-the-build-platform" { }; };
      hello = stubDrv "hello" { };
    };
    overlay = import (repo + "/nix/overlay.nix");
    fix = f: let x = f x; in x;
  in fix (final: let b = base final; in b // overlay final b)`

// overlay.nix: mkBinaryCache has nixpkgs' callPackage shape (functionArgs
// with rootPaths required, .override) and builds with the build platform's
// mkbinarycache; mkbinarycache is package.nix.
func TestOverlay(t *testing.T) {
	nixtest.Require(t)
	root := nixtest.RepoRoot(t)
	track(t, root, "nix/overlay.nix", "nix/default.nix", "nix/package.nix", "go.mod")
	var got map[string]any
	expr := `let
    pkgs = ` + stubPkgs + `;
    other = stubDrv "another-mkbinarycache" { };
    cache = pkgs.mkBinaryCache { rootPaths = [ pkgs.hello ]; compression = "xz"; };
    overridden = pkgs.mkBinaryCache.override { mkbinarycache = other; };
  in {
    args = lib.functionArgs pkgs.mkBinaryCache;
    hasOverride = pkgs.mkBinaryCache ? override;
    overriddenArgs = lib.functionArgs overridden;
    inherit (cache) name compression builder;
    overriddenBuilder = (overridden { rootPaths = [ pkgs.hello ]; }).builder;
    missingRootPaths = (builtins.tryEval (pkgs.mkBinaryCache { }).drvPath).success;
    package = pkgs.mkbinarycache.name;
    packageCgo = pkgs.mkbinarycache.args.env.CGO_ENABLED;
  }`
	if out, err := evalJSON(t, expr, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	args, _ := got["args"].(map[string]any)
	// nixpkgs' pkgs/build-support/binary-cache: { name ? "binary-cache", compression ? "zstd", rootPaths }.
	for name, optional := range map[string]bool{"rootPaths": false, "name": true, "compression": true} {
		if args[name] != optional {
			t.Errorf("functionArgs mkBinaryCache: %s = %v, want %v (as nixpkgs' own)", name, args[name], optional)
		}
	}
	for _, ext := range []string{"compressionLevel", "narListing", "indexDebugInfo", "priority", "wantMassQuery", "derivers", "jobs", "xzProgram"} {
		if args[ext] != true {
			t.Errorf("functionArgs mkBinaryCache: extension %s = %v, want true (optional)", ext, args[ext])
		}
	}
	if diff := cmp.Diff(got["args"], got["overriddenArgs"]); diff != "" {
		t.Errorf("functionArgs after .override differ (-before +after):\n%s", diff)
	}
	hash := func(name string) string {
		out := nixtest.Run(t, "nix-instantiate", "--eval", "-E", `builtins.substring 0 32 (builtins.hashString "sha256" "`+name+`")`)
		return strings.Trim(out, `"`)
	}
	want := map[string]any{
		"hasOverride":       true,
		"name":              "binary-cache",
		"compression":       "xz",
		"builder":           "/nix/store/" + hash("mkbinarycache-for-the-build-platform") + "-mkbinarycache-for-the-build-platform/bin/mkbinarycache",
		"overriddenBuilder": "/nix/store/" + hash("another-mkbinarycache") + "-another-mkbinarycache/bin/mkbinarycache",
		"missingRootPaths":  false,
		"package":           "mkbinarycache-0.1.0",
		"packageCgo":        0.0,
	}
	delete(got, "args")
	delete(got, "overriddenArgs")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// vmtests/default.nix on the stub of each channel: what each host gets
// (runNixOSTest has checked every option they set), S3 on Garage as nixpkgs'
// own test sets it up, and a test script that Python compiles.
func TestVMTestsShape(t *testing.T) {
	nixtest.Require(t)
	root := nixtest.RepoRoot(t)
	track(t, root, append(stubFiles, "vmtests/default.nix", "vmtests/scenario.json", "vmtests/test-key-1.pub", "nix/overlay.nix")...)
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed to compile the VM test scripts")
	}
	const expr = `let
    pkgs = stub.pkgs { system = "x86_64-linux"; overlays = [ (import (repo + "/nix/overlay.nix")) ]; };
    tests = import (repo + "/vmtests") { inherit pkgs; };
    # Garage 1.x takes replication_mode (nixos/tests/garage/basic.nix).
    garage1 = (import (repo + "/vmtests") {
      pkgs = pkgs.extend (final: prev: { garage = prev.garage.overrideAttrs (_: { version = "1.3.0"; }); });
    }).zstd;
    show = t: let h1 = t.nodes.host1; h2 = t.nodes.host2; packed = h1.environment.etc."mkbinarycache-test/cache.tar.b64".source; in {
      inherit (t.config) name testScript;
      drvPath = t.drvPath;
      host1Paths = map toString h1.virtualisation.additionalPaths;
      host1Packages = map (p: p.name) h1.environment.systemPackages;
      host1Etc = builtins.attrNames h1.environment.etc;
      packedRefs = packed.allowedReferences;
      packedCmd = packed.buildCommand;
      garage = { inherit (h1.services.garage) enable settings; package = h1.services.garage.package.name; };
      host2 = { inherit (h2.virtualisation) useNixStoreImage writableStore; inherit (h2.nix.settings) substituters max-jobs; };
      host2HasPaths = h2.virtualisation ? additionalPaths;
      host1HasExtra = h1 ? system;
      host2HasExtra = h2 ? system;
    };
  in builtins.mapAttrs (n: show) tests // {
    garage1 = {
      inherit (garage1) drvPath;
      replication = builtins.removeAttrs garage1.nodes.host1.services.garage.settings [ "rpc_bind_addr" "rpc_public_addr" "rpc_secret" "s3_api" ];
    };
  }`
	for _, channel := range channels {
		t.Run(channel, func(t *testing.T) {
			var got map[string]struct {
				Name, TestScript, DrvPath string
				Host1Paths                []string
				Host1Packages             []string
				Host1Etc                  []string
				PackedRefs                []string
				PackedCmd                 string
				Garage                    map[string]any
				Host2                     map[string]any
				Host2HasPaths             bool
				Host1HasExtra             bool
				Host2HasExtra             bool
			}
			var all map[string]json.RawMessage
			if out, err := evalJSON(t, channelExpr(t, channel, expr), &all); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var garage1 struct {
				DrvPath     string
				Replication map[string]any
			}
			if err := json.Unmarshal(all["garage1"], &garage1); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]any{"replication_mode": "none"}, garage1.Replication); diff != "" || !strings.HasSuffix(garage1.DrvPath, ".drv") {
				t.Errorf("with Garage 1.x: %s, replication (-want +got):\n%s", garage1.DrvPath, diff)
			}
			delete(all, "garage1")
			raw, _ := json.Marshal(all)
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"bzip2", "none", "xz", "zstd"}, keys(got)); diff != "" {
				t.Errorf("tests (-want +got):\n%s", diff)
			}
			for c, vt := range got {
				if vt.Name != "mkbinarycache-"+c {
					t.Errorf("%s: name %q", c, vt.Name)
				}
				if !strings.HasSuffix(vt.DrvPath, ".drv") {
					t.Errorf("%s: drvPath %q", c, vt.DrvPath)
				}
				// The closure reaches host1 through the store, host2 not at all;
				// the cache reaches host1 packed, referring to nothing.
				if len(vt.Host1Paths) != 1 || !strings.HasSuffix(vt.Host1Paths[0], "-mkbinarycache-vmtest-root") {
					t.Errorf("%s: host1's additionalPaths %v, want the root of the closure under test", c, vt.Host1Paths)
				}
				if vt.Host1HasExtra || vt.Host2HasExtra || vt.Host2HasPaths {
					t.Errorf("%s: a host has system.* options or host2 has additionalPaths: the closure or the cache would enter a store", c)
				}
				if vt.PackedRefs == nil || len(vt.PackedRefs) != 0 {
					t.Errorf("%s: the packed cache's allowedReferences = %v, want []", c, vt.PackedRefs)
				}
				if !strings.Contains(vt.PackedCmd, "-binary-cache -c -f - . | base64") {
					t.Errorf("%s: the packed cache is not the cache, tarred and base64-encoded: %q", c, vt.PackedCmd)
				}
				for _, p := range vt.Host1Packages {
					if strings.HasPrefix(p, "minio") {
						t.Errorf("%s: host1 has %s", c, p)
					}
				}
				// nixos/tests/garage/default.nix's mkNode settings, with the
				// replication basic.nix gives Garage 2.
				wantGarage := map[string]any{
					"enable":  true,
					"package": got[c].Garage["package"],
					"settings": map[string]any{
						"rpc_bind_addr":      "[::]:3901",
						"rpc_public_addr":    "127.0.0.1:3901",
						"rpc_secret":         "5c1915fa04d0b6739675c61bf5907eb0fe3d9c69850c83820f51b4d25d13868c",
						"s3_api":             map[string]any{"s3_region": "garage", "api_bind_addr": "[::]:3900", "root_domain": ".s3.garage"},
						"replication_factor": 1.0,
						"consistency_mode":   "consistent",
					},
				}
				if diff := cmp.Diff(wantGarage, vt.Garage); diff != "" {
					t.Errorf("%s: host1's services.garage (-want +got):\n%s", c, diff)
				}
				if p, _ := vt.Garage["package"].(string); !strings.HasPrefix(p, "garage-") {
					t.Errorf("%s: services.garage.package is %q", c, p)
				}
				want := map[string]any{"useNixStoreImage": true, "writableStore": true, "substituters": []any{}, "max-jobs": 0.0}
				if diff := cmp.Diff(want, vt.Host2); diff != "" {
					t.Errorf("%s: host2 (-want +got):\n%s", c, diff)
				}
				for _, s := range []string{
					`S3_URL = "s3://binary-cache?endpoint=http://host1:3900&region=garage"`,
					"mkbinarycache push /srv/cache '{S3_URL}'",
					`garage layout assign -z vmtest -c 1G {node_id}`,
					`garage layout apply --version`,
					`garage key create mkbinarycache-test`,
					`garage bucket create {bucket}`,
					`garage bucket allow --read --write {bucket} --key mkbinarycache-test`,
					"--aws-sigv4 aws:amz:garage:s3",
					`scenario = json.load(open("/nix/store/`,
					`COMPRESSION = "` + c + `"`,
				} {
					if !strings.Contains(vt.TestScript, s) {
						t.Errorf("%s: test script lacks %q", c, s)
					}
				}
				if strings.Contains(vt.TestScript, "extraDependencies") {
					t.Errorf("%s: test script mentions extraDependencies", c)
				}
				script := filepath.Join(t.TempDir(), "test_script.py")
				if err := os.WriteFile(script, []byte(vt.TestScript), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(python, "-m", "py_compile", script).CombinedOutput(); err != nil {
					t.Errorf("%s: python3 cannot compile the test script: %v\n%s", c, err, out)
				}
			}
		})
	}
}

// The command of package.nix's checkPhase passes where buildGoModule runs it:
// vendored modules only (GOFLAGS=-mod=vendor, GOPROXY=off), no Nix on PATH,
// only stdenv's tools, no network but loopback, a user that is not root, no
// home directory.
func TestCheckPhaseInSandbox(t *testing.T) {
	nixtest.Require(t)
	if testing.Short() {
		t.Skip("runs the builder's whole test suite")
	}
	root := nixtest.RepoRoot(t)
	pkg, err := os.ReadFile(filepath.Join(root, "nix", "package.nix"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(go test [^\n]*)$`).FindSubmatch(pkg)
	if m == nil {
		t.Fatal("package.nix's checkPhase runs no go test")
	}
	check := string(m[1])
	for _, tool := range []string{"unshare", "setpriv", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to imitate the sandbox: %v", tool, err)
		}
	}

	// The sources package.nix's fileset takes, and the vendor directory
	// buildGoModule makes of them.
	// Not t.TempDir(): its parent is closed to the unprivileged user.
	dir, err := os.MkdirTemp("", "mbc-check")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, p := range []string{"go.mod", "go.sum", "builder", "internal", "testdata"} {
		nixtest.Run(t, "cp", "-r", filepath.Join(root, p), dir)
	}
	vendor := exec.Command("go", "mod", "vendor")
	vendor.Dir = dir
	if out, err := vendor.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}

	// stdenv's tools (coreutils, findutils, diffutils, sed, grep, gawk, tar,
	// gzip, bzip2, xz, bash) and Go; not nix, zstd, busybox or python.
	bin := filepath.Join(dir, ".bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	goroot := nixtest.Run(t, "go", "env", "GOROOT")
	tools := map[string]string{"go": filepath.Join(goroot, "bin", "go")}
	for _, name := range strings.Fields(`bash sh cat cp mv rm ls mkdir rmdir chmod ln head tail wc sort uniq tr cut
		dirname basename env true false test expr seq sleep touch stat readlink realpath mktemp date id printf
		echo xz bzip2 gzip tar grep sed find xargs diff cmp gawk awk od sha256sum md5sum tee uname`) {
		if p, err := exec.LookPath(name); err == nil {
			tools[name] = p
		}
	}
	for name, p := range tools {
		if err := os.Symlink(p, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A short TMPDIR, as the sandbox's /build: unix socket paths must fit.
	tmp, err := os.MkdirTemp("", "b")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	// Go's build and test caches are keyed by content, so one kept across
	// runs changes no outcome, and spares recompiling everything each time.
	gocache := filepath.Join(os.TempDir(), "mkbinarycache-check-gocache")
	if err := os.MkdirAll(gocache, 0o755); err != nil {
		t.Fatal(err)
	}
	nixtest.Run(t, "chown", "-R", "65534:65534", dir, tmp, gocache)

	env := []string{
		"PATH=" + bin, "HOME=/homeless-shelter", "TMPDIR=" + tmp,
		"GOCACHE=" + gocache, "GOPATH=" + filepath.Join(dir, ".gopath"),
		"GOFLAGS=-mod=vendor", "GOPROXY=off", "GOSUMDB=off", "GOTOOLCHAIN=local", "GO111MODULE=on",
		"CGO_ENABLED=0", "NIX_BUILD_CORES=2",
	}
	inner := "ip link set lo up && cd " + dir + " && exec setpriv --reuid=65534 --regid=65534 --clear-groups env -i " +
		strings.Join(env, " ") + " sh -c '" + check + "'"
	cmd := exec.Command("unshare", "--net", "sh", "-c", inner)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s, as in the sandbox: %v\n%s", check, err, out)
	}
	t.Logf("%s, as in the sandbox:\n%s", check, out)
}

// The closure and the packed cache of vmtests/default.nix, built for real
// with busybox standing in for stdenv: the closure builds, and the packed
// cache refers to no store path (Nix checks allowedReferences = [ ]), while
// unpacking it gives the cache of the whole closure.
func TestVMTestsPackedCache(t *testing.T) {
	nixtest.Require(t)
	root := nixtest.RepoRoot(t)
	track(t, root, "vmtests/default.nix", "nix/default.nix")
	expr := `let
    lib = import ` + root + `/nix/testdata/nixpkgs-stub-lib.nix;
    stubDrv = ` + stubDrv + `;
    bb = builtins.path { path = ` + nixtest.BusyboxDir(t) + `; name = "busybox"; };
    run = name: env: cmd: derivation ({
      inherit name;
      system = builtins.currentSystem;
      builder = "${bb}/bin/busybox";
      args = [ "sh" "-e" "-c" cmd ];
      PATH = "${bb}/bin";
    } // env);
    pkgs = {
      inherit lib;
      mkbinarycache = stubDrv "mkbinarycache" { };
      inherit ((import ` + root + `/nix { builder = builtins.path { path = ` + nixtest.BuildBinary(t) + `; name = "mkbinarycache"; }; })) mkBinaryCache;
      writeText = name: text: run name { inherit text; } "printf '%s' \"$text\" > $out";
      runCommand = run;
      runtimeShell = "${bb}/bin/busybox";
      curl = stubDrv "curl" { };
      garage = stubDrv "garage" { version = "2.2.0"; };
      testers.runNixOSTest = test: test;
    };
    host1 = (import ` + root + `/vmtests { inherit pkgs; }).zstd.nodes.host1 { inherit pkgs; };
  in {
    packed = host1.environment.etc."mkbinarycache-test/cache.tar.b64".source;
    root = builtins.head host1.virtualisation.additionalPaths;
  }`
	build := func(attr string) string {
		out, err := exec.Command("nix-build", "--no-out-link", "--option", "sandbox", "true", "-E", expr, "-A", attr).CombinedOutput()
		if err != nil {
			t.Fatalf("nix-build -A %s: %v\n%s", attr, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return lines[len(lines)-1]
	}
	packed, rootPath := build("packed"), build("root")
	if refs := nixtest.Run(t, "nix-store", "--query", "--references", packed); refs != "" {
		t.Errorf("the packed cache refers to %s", refs)
	}
	dir := t.TempDir()
	nixtest.Run(t, "sh", "-c", "base64 -d "+packed+" | tar -x -f - --no-same-owner -C "+dir)
	closure := strings.Fields(nixtest.Run(t, "nix-store", "--query", "--requisites", rootPath))
	if len(closure) != 4 {
		t.Errorf("the closure under test is %v, want root, mid, leaf and the shell", closure)
	}
	var want, got []string
	for _, p := range closure {
		want = append(want, strings.SplitN(filepath.Base(p), "-", 2)[0]+".narinfo")
	}
	narinfos, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	for _, n := range narinfos {
		got = append(got, filepath.Base(n))
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("narinfos of the unpacked cache (-want +got):\n%s", diff)
	}
}
