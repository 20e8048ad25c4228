package nix_test

// package.nix, overlay.nix, flake.nix, default.nix and vmtests/default.nix
// evaluated on a stub of each maintained nixpkgs channel
// (testdata/nixpkgs-stub.nix): throwing aliases of end-of-life Go builders,
// check-meta refusing insecure and unsupported packages, runNixOSTest
// checking each node's options. Every flake output must evaluate to a
// drvPath on every channel.

import (
	"go/version"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// The nixpkgs channels still maintained (December 2026).
var channels = []string{"nixos-25.11", "nixos-26.05", "nixos-unstable"}

// stubFiles are the files the channel stubs are made of.
var stubFiles = []string{"nix/testdata/nixpkgs-stub.nix", "nix/testdata/nixpkgs-stub-lib.nix", "nix/testdata/nixos-test-stub.nix"}

// channelExpr binds `stub` (the channel's stub: .lib, .pkgs) and `nixpkgs`
// (the stub as a flake input: importable, with .lib) for expr.
func channelExpr(t *testing.T, channel, expr string) string {
	t.Helper()
	root := nixtest.RepoRoot(t)
	// `import nixpkgs { ... }` imports a directory: one per channel.
	dir := t.TempDir()
	def := `(import ` + root + `/nix/testdata/nixpkgs-stub.nix { channel = "` + channel + `"; }).pkgs`
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	return `let
    stub = import (repo + "/nix/testdata/nixpkgs-stub.nix") { channel = "` + channel + `"; };
    nixpkgs = { outPath = "` + dir + `"; inherit (stub) lib; };
  in ` + expr
}

// Every output of flake.nix and of default.nix evaluates on each channel,
// down to the drvPath of every derivation, with the default buildGoModule.
func TestChannelsEvaluate(t *testing.T) {
	nixtest.Require(t)
	root := nixtest.RepoRoot(t)
	track(t, root, append(stubFiles, "flake.nix", "default.nix", "nix/package.nix", "nix/overlay.nix", "nix/default.nix",
		"vmtests/default.nix", "vmtests/scenario.json", "go.mod")...)
	const expr = `let
    flake = import (repo + "/flake.nix");
    self = flake.outputs { inherit self nixpkgs; } // { outPath = repo; };
    drvs = builtins.mapAttrs (_: d: d.drvPath);
    overlaid = system: stub.pkgs { inherit system; overlays = [ self.overlays.default ]; };
    legacy = import repo { pkgs = stub.pkgs { system = "x86_64-linux"; }; };
    pkgs = overlaid "x86_64-linux";
  in {
    packages = builtins.mapAttrs (_: drvs) self.packages;
    devShells = builtins.mapAttrs (_: drvs) self.devShells;
    checks = builtins.mapAttrs (_: drvs) self.checks;
    devShellGo = pkgs.mkbinarycache.go.version;
    overlay = {
      mkbinarycache = pkgs.mkbinarycache.drvPath;
      mkBinaryCache = (pkgs.mkBinaryCache { rootPaths = [ pkgs.hello ]; }).drvPath;
    };
    lib = (self.lib.mkBinaryCacheFor "aarch64-linux" { rootPaths = [ pkgs.hello ]; }).drvPath;
    legacy = {
      mkbinarycache = legacy.mkbinarycache.drvPath;
      example = legacy.example.drvPath;
      tests = drvs legacy.tests;
      nixpkgsTests = drvs legacy.nixpkgsTests;
    };
    # meta.platforms: Linux only, as check-meta enforces.
    darwin = (builtins.tryEval (overlaid "aarch64-darwin").mkbinarycache.drvPath).success;
  }`
	checks := []string{"example", "mkbinarycache", "nixpkgs-binary-cache", "nixpkgs-binary-cache-no-compression",
		"nixpkgs-binary-cache-xz", "vm-bzip2", "vm-none", "vm-xz", "vm-zstd"}
	goMod := goModMinor(t)
	for _, channel := range channels {
		t.Run(channel, func(t *testing.T) {
			var got struct {
				Packages, DevShells, Checks map[string]map[string]string
				DevShellGo                  string
				Overlay                     map[string]string
				Lib                         string
				Legacy                      struct {
					Mkbinarycache, Example string
					Tests, NixpkgsTests    map[string]string
				}
				Darwin bool
			}
			if out, err := evalJSON(t, channelExpr(t, channel, expr), &got); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var paths []string
			for _, system := range []string{"x86_64-linux", "aarch64-linux"} {
				if diff := cmp.Diff([]string{"default", "example", "mkbinarycache"}, keys(got.Packages[system])); diff != "" {
					t.Errorf("packages.%s (-want +got):\n%s", system, diff)
				}
				if diff := cmp.Diff([]string{"default"}, keys(got.DevShells[system])); diff != "" {
					t.Errorf("devShells.%s (-want +got):\n%s", system, diff)
				}
				if diff := cmp.Diff(checks, keys(got.Checks[system])); diff != "" {
					t.Errorf("checks.%s (-want +got):\n%s", system, diff)
				}
				paths = append(paths, values(got.Packages[system])...)
				paths = append(paths, values(got.DevShells[system])...)
				paths = append(paths, values(got.Checks[system])...)
			}
			paths = append(paths, values(got.Overlay)...)
			paths = append(paths, got.Lib, got.Legacy.Mkbinarycache, got.Legacy.Example)
			paths = append(paths, values(got.Legacy.Tests)...)
			paths = append(paths, values(got.Legacy.NixpkgsTests)...)
			for _, p := range paths {
				if !strings.HasPrefix(p, "/nix/store/") || !strings.HasSuffix(p, ".drv") {
					t.Errorf("an output's drvPath is %q", p)
				}
			}
			if diff := cmp.Diff([]string{"bzip2", "none", "xz", "zstd"}, keys(got.Legacy.Tests)); diff != "" {
				t.Errorf("default.nix's tests (-want +got):\n%s", diff)
			}
			if v := got.DevShellGo; version.Compare("go"+v, "go"+goMod) < 0 {
				t.Errorf("the package builds with Go %s, go.mod asks for %s", v, goMod)
			}
			if got.Darwin {
				t.Error("mkbinarycache evaluates for aarch64-darwin; meta.platforms should be Linux only")
			}
		})
	}
}

// The stubs fail where the channels fail, so that a test passing on them
// means something: a package that names an end-of-life builder (as
// package.nix once did, with `buildGo125Module ? null`) dies on the channel
// that removed it; check-meta refuses insecure packages unless permitted;
// runNixOSTest refuses options that do not exist, values of the wrong type
// and a garage service without a package.
func TestChannelStubsFail(t *testing.T) {
	nixtest.Require(t)
	root := nixtest.RepoRoot(t)
	track(t, root, stubFiles...)
	for _, tc := range []struct {
		name, channel, expr, want string
	}{
		{"named builder on nixos-unstable", "nixos-unstable",
			`(pkgs.callPackage ({ buildGoModule, buildGo125Module ? null }: if buildGo125Module != null then buildGo125Module { vendorHash = null; pname = "x"; version = "1"; } else buildGoModule { }) { }).drvPath`,
			"Go 1.25 is end-of-life, and 'buildGo125Module' has been removed. Please use a newer builder version."},
		{"named builder on nixos-26.05", "nixos-26.05", `pkgs.buildGo124Module.drvPath`,
			"Go 1.24 is end-of-life, and 'buildGo124Module' has been removed."},
		{"insecure package", "nixos-unstable", `pkgs.minio.drvPath`,
			"Refusing to evaluate package 'minio-2025-10-15T17-29-55Z' in «unknown-file» because it is marked as insecure"},
		{"insecure package in a system", "nixos-unstable",
			`(pkgs.testers.runNixOSTest { name = "t"; nodes.m = { pkgs, ... }: { environment.systemPackages = [ pkgs.minio ]; }; testScript = ""; }).drvPath`,
			"because it is marked as insecure"},
		{"unsupported platform", "nixos-26.05",
			`((stub.pkgs { system = "x86_64-darwin"; }).stdenv.mkDerivation { name = "x"; meta.platforms = lib.platforms.linux; }).drvPath`,
			"is not available on the requested hostPlatform"},
		{"option that does not exist", "nixos-unstable",
			`(pkgs.testers.runNixOSTest { name = "t"; nodes.m = { services.garage.setting.rpc_secret = "x"; }; testScript = ""; }).drvPath`,
			"The option `services.garage.setting' does not exist."},
		{"setting outside settings", "nixos-unstable",
			`(pkgs.testers.runNixOSTest { name = "t"; nodes.m = { pkgs, ... }: { services.garage = { enable = true; package = pkgs.garage; s3_api.s3_region = "garage"; }; }; testScript = ""; }).drvPath`,
			"The option `services.garage.s3_api' does not exist."},
		{"value of the wrong type", "nixos-unstable",
			`(pkgs.testers.runNixOSTest { name = "t"; nodes.m = { virtualisation.diskSize = "2G"; }; testScript = ""; }).drvPath`,
			"A definition for option `virtualisation.diskSize' is not of type `null or signed integer'."},
		{"garage without a package", "nixos-unstable",
			`(pkgs.testers.runNixOSTest { name = "t"; nodes.m = { services.garage.enable = true; }; testScript = ""; }).drvPath`,
			"The option `services.garage.package' was accessed but has no value defined."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got any
			expr := channelExpr(t, tc.channel, `let pkgs = stub.pkgs { system = "x86_64-linux"; }; lib = stub.lib; in `+tc.expr)
			out, err := evalJSON(t, expr, &got)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("got %v (error %v), output:\n%s\nwant an error containing %q", got, err, out, tc.want)
			}
		})
	}

	t.Run("insecure package permitted", func(t *testing.T) {
		var got string
		expr := channelExpr(t, "nixos-unstable",
			`(stub.pkgs { system = "x86_64-linux"; config.permittedInsecurePackages = [ "minio-2025-10-15T17-29-55Z" ]; }).minio.drvPath`)
		if out, err := evalJSON(t, expr, &got); err != nil || !strings.HasSuffix(got, ".drv") {
			t.Errorf("got %q, %v\n%s", got, err, out)
		}
	})
}

// package.nix on each channel: the default buildGoModule, static, its
// version linked in, Linux only; and a clear error where Go is too old.
func TestPackageAttributes(t *testing.T) {
	nixtest.Require(t)
	root := nixtest.RepoRoot(t)
	track(t, root, append(stubFiles, "nix/package.nix", "go.mod")...)
	const expr = `let
    pkgs = stub.pkgs { system = "x86_64-linux"; };
    p = pkgs.callPackage (repo + "/nix/package.nix") { };
  in {
    inherit (p) pname version subPackages ldflags;
    cgo = p.env.CGO_ENABLED;
    license = p.meta.license.spdxId;
    inherit (p.meta) mainProgram platforms;
    go = p.go.version == pkgs.go.version;
    vendorHash = builtins.substring 0 7 p.vendorHash;
    checkRunsGoTest = builtins.match ".*go test -short [^\n]* ./builder/[.][.][.]\n.*" p.checkPhase != null;
  }`
	want := map[string]any{
		"pname":           "mkbinarycache",
		"version":         "0.1.0",
		"subPackages":     []any{"builder/cmd/mkbinarycache"},
		"ldflags":         []any{"-s", "-w", "-X main.version=0.1.0"},
		"cgo":             0.0,
		"license":         "MIT",
		"mainProgram":     "mkbinarycache",
		"platforms":       []any{"x86_64-linux", "aarch64-linux"},
		"go":              true,
		"vendorHash":      "sha256-",
		"checkRunsGoTest": true,
	}
	for _, channel := range channels {
		t.Run(channel, func(t *testing.T) {
			var got map[string]any
			if out, err := evalJSON(t, channelExpr(t, channel, expr), &got); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("Go older than go.mod", func(t *testing.T) {
		var got any
		expr := channelExpr(t, "nixos-25.11", `let pkgs = stub.pkgs { system = "x86_64-linux"; }; in
      (pkgs.callPackage (repo + "/nix/package.nix") { go = { version = "1.24.9"; }; }).drvPath`)
		out, err := evalJSON(t, expr, &got)
		want := "mkbinarycache: go.mod asks for Go " + goModMinor(t) + ", but this nixpkgs' buildGoModule has Go 1.24.9"
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("error %v, output:\n%s\nwant %q", err, out, want)
		}
	})
}

func keys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func values[V any](m map[string]V) []V {
	var v []V
	for _, n := range keys(m) {
		v = append(v, m[n])
	}
	return v
}
