# NixOS VM tests of mkBinaryCache, one per compression:
#
#   nix-build vmtests -A zstd          # or: nix build .#checks.x86_64-linux.vm-zstd
#
# host1 has the closure under test in its store and the cache of it (built by
# our mkBinaryCache at build time); host2 is a client on a store of its own
# that lacks that closure. What runs on each host and what the output must show
# is in ./scenario.json, shared with the local twin (namespaces instead of VMs).
# This file supplies the machines, the placeholders and the transports:
#   file: host1 copies the cache (and a signed copy) to host2 with `scp -r`;
#   http: nginx on host1 serves them, host2 uses http://host1/... URLs;
#   s3:   host1 pushes them to Garage with `mkbinarycache push`, host2 uses
#         s3://...?endpoint=http://host1:3900&region=garage URLs.
# It also checks, on every transport, that host2 fetches exactly the paths of
# the closure it lacked: the set of `copying path` lines is the set of paths
# that were invalid before.
{
  pkgs ? import <nixpkgs> { },
}:

let
  # Use our mkBinaryCache even when handed a plain nixpkgs.
  pkgs' = if pkgs ? mkbinarycache then pkgs else pkgs.extend (import ../nix/overlay.nix);
  inherit (pkgs') lib;

  # The closure under test: three paths that exist nowhere but here, so that
  # host2 cannot have them (unlike nixpkgs' hello, whose closure a NixOS
  # system largely shares), plus bash and glibc, which host2 has.
  leaf = pkgs'.writeText "mkbinarycache-vmtest-leaf" "the leaf of the closure under test\n";
  mid = pkgs'.runCommand "mkbinarycache-vmtest-mid" { } ''
    mkdir $out
    ln -s ${leaf} $out/leaf
    # About 20 MiB: a NAR large enough to be compressed in several chunks.
    seq 1 3000000 > $out/numbers
  '';
  root = pkgs'.runCommand "mkbinarycache-vmtest-root" { } ''
    mkdir -p $out/bin
    ln -s ${mid} $out/mid
    cat > $out/bin/hello <<EOF
    #!${pkgs'.runtimeShell}
    test "\$(cat ${leaf})" = "the leaf of the closure under test" || exit 1
    test "\$(tail -n 1 ${mid}/numbers)" = 3000000 || exit 1
    echo "Hello from the closure under test"
    EOF
    chmod +x $out/bin/hello
  '';

  storePath = drv: builtins.unsafeDiscardStringContext (toString drv);
  # The paths host2 must lack before it substitutes (bash it may have).
  ownPaths = map storePath [
    root
    mid
    leaf
  ];

  publicKey = lib.fileContents ./test-key-1.pub;

  # Garage, set up as nixpkgs' own test of it does (nixos/tests/garage/
  # default.nix, common.nix, basic.nix): the options below are those
  # nixos/modules/services/web-servers/garage.nix declares (enable, package
  # with no default, settings as a freeform TOML submodule), the settings
  # those of mkNode (rpc_bind_addr, rpc_public_addr, rpc_secret, s3_api with
  # s3_region, api_bind_addr and root_domain), a replication setting as
  # basic.nix gives each Garage version, 2 GiB of disk ("Garage requires at
  # least 1GiB of free disk space"); the test script assigns and applies the
  # layout, creates the key and the buckets and allows the key on them as
  # common.nix does, with the `garage` command the module installs. A
  # careful read of those files, not an evaluation against nixpkgs.
  s3Region = "garage";
  s3Url = bucket: "s3://${bucket}?endpoint=http://host1:3900&region=${s3Region}";
  garageSettings =
    package:
    {
      rpc_bind_addr = "[::]:3901";
      rpc_public_addr = "127.0.0.1:3901";
      # A fixed, public test secret (as nixpkgs' test has one).
      rpc_secret = "5c1915fa04d0b6739675c61bf5907eb0fe3d9c69850c83820f51b4d25d13868c";
      s3_api = {
        s3_region = s3Region;
        api_bind_addr = "[::]:3900";
        root_domain = ".s3.garage";
      };
    }
    // (
      if lib.versionAtLeast package.version "2" then
        {
          replication_factor = 1;
          consistency_mode = "consistent";
        }
      else
        { replication_mode = "none"; }
    );

  mkTest =
    compression:
    let
      cache = pkgs'.mkBinaryCache {
        rootPaths = [ root ];
        inherit compression;
      };

      # As nixpkgs' binary-cache test does: the cache reaches host1 packed at
      # build time, so that its store path refers to nothing (the narinfo
      # names would otherwise make the whole closure a runtime dependency of
      # the cache, and put it in every VM's store). base64 leaves no store
      # path in the file for Nix's reference scanner to find.
      packedCache =
        pkgs'.runCommand "mkbinarycache-vmtest-cache-${compression}.tar.b64"
          {
            allowedReferences = [ ];
          }
          ''
            tar -C ${cache} -c -f - . | base64 > $out
          '';
    in
    pkgs'.testers.runNixOSTest {
      name = "mkbinarycache-${compression}";

      nodes.host1 =
        { pkgs, ... }:
        {
          environment.systemPackages = [
            pkgs.mkbinarycache
            pkgs.curl
          ];
          # The closure under test, valid in host1's store.
          virtualisation.additionalPaths = [ root ];
          virtualisation.memorySize = 2048;
          virtualisation.diskSize = 2 * 1024;
          environment.etc."mkbinarycache-test/cache.tar.b64".source = packedCache;
          # A fixed, public test key: never use it for anything else.
          environment.etc."mkbinarycache-test/test-key-1.sec".source = ./test-key-1.sec;

          services.nginx = {
            enable = true;
            virtualHosts.host1 = {
              default = true;
              root = "/srv/www";
            };
          };
          services.garage = {
            enable = true;
            package = pkgs.garage;
            settings = garageSettings pkgs.garage;
          };
          networking.firewall.allowedTCPPorts = [
            80
            3900
          ];
          systemd.tmpfiles.rules = [
            "d /srv/www 0755 root root -"
            "d /srv/work 0755 root root -"
          ];
          nix.settings.substituters = lib.mkForce [ ];
        };

      nodes.host2 = {
        # A store of its own (an image of host2's system closure) instead of
        # the host's store, which holds the closure under test: host2 must not
        # even see those files before it substitutes them.
        virtualisation.useNixStoreImage = true;
        virtualisation.writableStore = true;
        services.openssh.enable = true;
        environment.systemPackages = [ pkgs'.curl ];
        # Nothing but the caches under test, and no building: whatever host2
        # gets, it gets by substitution (the local twin's host2 has the same).
        nix.settings.substituters = lib.mkForce [ ];
        nix.settings.max-jobs = 0;
        # The S3 key exists only once the test has made it on host1; the
        # daemon, which fetches the substitutes, gets it then through
        # `systemctl set-environment` and a restart.
      };

      testScript = ''
        import json
        import re
        import shlex

        scenario = json.load(open("${./scenario.json}"))

        ROOT = ${builtins.toJSON (storePath root)}
        OWN_PATHS = ${builtins.toJSON ownPaths}
        DRV = ${builtins.toJSON (builtins.unsafeDiscardStringContext root.drvPath)}
        COMPRESSION = ${builtins.toJSON compression}
        PUBKEY = ${builtins.toJSON publicKey}
        S3_URL = ${builtins.toJSON (s3Url "binary-cache")}
        S3_SIGNED_URL = ${builtins.toJSON (s3Url "signed-cache")}


        def subst(text, values):
            for key, value in values.items():
                text = text.replace(key, value)
            left = re.findall(r"@[A-Z_]+@", text)
            assert not left, f"placeholders {left} left in {text!r}"
            return text


        def run_step(machine, step, values):
            command = subst(step["run"], values)
            print(f"{machine.name}: step: {step['name']}")
            status, out = machine.execute("sh -c " + shlex.quote(command) + " 2>&1")
            problems = []
            if (status == 0) != (step["expect"] == "success"):
                problems.append(f"exit status {status}, expected {step['expect']}")
            for want in step.get("contains", []):
                if subst(want, values) not in out:
                    problems.append(f"output lacks {subst(want, values)!r}")
            any_of = [subst(w, values) for w in step.get("containsAny", [])]
            if any_of and not any(w in out for w in any_of):
                problems.append(f"output has none of {any_of!r}")
            if "lastLine" in step:
                lines = [line for line in out.splitlines() if line.strip()]
                last = lines[-1] if lines else ""
                if last != subst(step["lastLine"], values):
                    problems.append(f"last line is {last!r}, expected {subst(step['lastLine'], values)!r}")
            if problems:
                raise Exception(
                    f"{machine.name}: step {step['name']!r} failed: " + "; ".join(problems)
                    + f"\n$ {command}\n{out}"
                )


        def refusals():
            """The refusal wordings of scenario.json, as regular expressions in
            which a substituter URL matches any URL (Nix prints an s3:// store
            without its query)."""
            case = next(c for c in scenario["cases"] if c["name"] == "unsigned-refused")
            step = next(s for s in case["steps"] if s.get("containsAny"))
            return [
                re.compile(".*".join(re.escape(part) for part in w.replace("@ROOT@", ROOT).split("@URL@")))
                for w in step["containsAny"]
            ]


        def realise(url, extra="", env=""):
            return host2.execute(
                f"{env} nix-store --realise {ROOT} --option substituters '{url}'"
                f" --option trusted-substituters '{url}' {extra} 2>&1"
            )


        def check_fetches_exactly_what_is_missing(url, url_prefix, env=""):
            """host2 substitutes the root and copies exactly the paths of the
            closure it lacked, each once, all from `url`."""
            closure = host1.succeed(f"nix-store --query --requisites {ROOT}").split()
            missing = [p for p in closure if host2.execute(f"nix-store --check-validity {p}")[0] != 0]
            for p in OWN_PATHS:
                assert p in missing, f"{p} is valid on host2 before it was substituted"
                host2.succeed(f"test ! -e {p}")
            status, out = realise(url, "--option require-sigs false", env)
            assert status == 0, f"substituting from {url} failed:\n{out}"
            copies = re.findall(r"copying path '([^']+)' from '([^']+)'", out)
            copied = [path for path, _ in copies]
            wrong = [src for _, src in copies if not src.startswith(url_prefix)]
            assert not wrong, f"paths copied from {wrong}, not from {url_prefix}:\n{out}"
            assert len(copied) == len(set(copied)), f"a path was copied twice:\n{out}"
            assert sorted(copied) == sorted(missing), (
                f"copied {sorted(copied)}, but host2 lacked {sorted(missing)}:\n{out}"
            )
            for p in closure:
                host2.succeed(f"nix-store --check-validity {p} && nix-store --verify-path {p}")
            host2.succeed(f"{ROOT}/bin/hello")
            # Fresh again for whatever comes next.
            host2.succeed("nix-store --delete " + " ".join(OWN_PATHS))
            for p in OWN_PATHS:
                host2.succeed(f"test ! -e {p}")


        start_all()
        host1.wait_for_unit("multi-user.target")
        host2.wait_for_unit("multi-user.target")

        with subtest("host2 has none of the closure under test, not even its files"):
            for p in OWN_PATHS:
                host2.succeed(f"test ! -e {p}")
                host2.fail(f"nix-store --check-validity {p}")
            host1.succeed(f"nix-store --check-validity {ROOT}")

        with subtest("server: unpack the cache, check it and sign a copy"):
            host1.succeed(
                "mkdir /srv/cache"
                " && base64 -d /etc/mkbinarycache-test/cache.tar.b64 | tar -x -f - --no-same-owner -C /srv/cache"
                " && chmod -R a-w /srv/cache"
            )
            server = {
                "@ROOT@": ROOT,
                "@CACHE@": "/srv/cache",
                "@COMPRESSION@": COMPRESSION,
                "@WORK@": "/srv/work",
                "@SECKEY@": "/etc/mkbinarycache-test/test-key-1.sec",
                "@MKBINARYCACHE@": "${lib.getExe pkgs'.mkbinarycache}",
            }
            for step in scenario["server"]["prepare"]:
                run_step(host1, step, server)

        with subtest("publish over http"):
            host1.succeed("ln -sfn /srv/cache /srv/www/cache")
            host1.succeed("ln -sfn /srv/work/signed /srv/www/signed")
            host1.wait_for_unit("nginx.service")
            host2.wait_until_succeeds("curl -fsS http://host1/cache/nix-cache-info")
            host2.succeed("curl -fsS http://host1/signed/nix-cache-info")

        with subtest("publish by copying the files over ssh"):
            host1.succeed("mkdir -p -m 700 /root/.ssh && ssh-keygen -q -t ed25519 -N ''' -f /root/.ssh/id_ed25519")
            key = host1.succeed("cat /root/.ssh/id_ed25519.pub").strip()
            host2.succeed(f"mkdir -p -m 700 /root/.ssh && echo '{key}' >> /root/.ssh/authorized_keys")
            host2.wait_for_open_port(22)
            ssh_opts = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            host1.succeed(f"scp {ssh_opts} -r /srv/cache host2:/tmp/cache")
            host1.succeed(f"scp {ssh_opts} -r /srv/work/signed host2:/tmp/signed-cache")

        with subtest("publish to S3 (Garage) with mkbinarycache push"):
            # As nixpkgs' nixos/tests/garage/common.nix: one node, its layout
            # assigned and applied, a key, buckets the key may read and write.
            host1.wait_for_unit("garage.service")
            host1.wait_for_open_port(3900)
            node_id = host1.succeed("garage node id").split("@")[0].strip()
            host1.succeed(f"garage layout assign -z vmtest -c 1G {node_id}")
            layout = host1.succeed("garage layout show")
            version = re.search(r"Current cluster layout version: (\d+)", layout)
            assert version, f"no layout version in:\n{layout}"
            host1.succeed(f"garage layout apply --version {int(version.group(1)) + 1}")
            key = host1.succeed("garage key create mkbinarycache-test")
            fields = dict(
                (m.group(1).lower(), m.group(2).strip())
                for m in re.finditer(r"(Key ID|Secret key):\s*(\S+)", key, re.IGNORECASE)
            )
            assert "key id" in fields and "secret key" in fields, f"no key in:\n{key}"
            S3_ENV = f"AWS_ACCESS_KEY_ID={fields['key id']} AWS_SECRET_ACCESS_KEY={fields['secret key']}"
            S3_CURL = f"curl -fsS --aws-sigv4 aws:amz:${s3Region}:s3 --user {fields['key id']}:{fields['secret key']}"
            for bucket in ["binary-cache", "signed-cache"]:
                host1.succeed(f"garage bucket create {bucket}")
                host1.succeed(f"garage bucket allow --read --write {bucket} --key mkbinarycache-test")
            host2.succeed(
                f"systemctl set-environment AWS_ACCESS_KEY_ID={fields['key id']} AWS_SECRET_ACCESS_KEY={fields['secret key']}"
                " && systemctl restart nix-daemon"
            )
            host1.succeed(f"{S3_ENV} mkbinarycache push /srv/cache '{S3_URL}'")
            host1.succeed(f"{S3_ENV} mkbinarycache push /srv/work/signed '{S3_SIGNED_URL}'")
            want = int(host1.succeed("ls /srv/cache | grep -c '\\.narinfo$'").strip())
            for bucket in ["binary-cache", "signed-cache"]:
                host1.succeed(f"{S3_CURL} http://localhost:3900/{bucket}/nix-cache-info")
                listing = host1.succeed(f"{S3_CURL} 'http://localhost:3900/{bucket}?list-type=2'")
                narinfos = len(re.findall(r"<Key>[^<]*\.narinfo</Key>", listing))
                assert narinfos == want, f"bucket {bucket} has {narinfos} narinfos, the cache {want}"

        transports = {
            "file": {
                "@URL@": "file:///tmp/cache",
                "@SIGNED_URL@": "file:///tmp/signed-cache",
                "@CACHE@": "/tmp/cache",
                "@SIGNED_CACHE@": "/tmp/signed-cache",
            },
            "http": {
                "@URL@": "http://host1/cache",
                "@SIGNED_URL@": "http://host1/signed",
            },
        }

        for transport, urls in transports.items():
            with subtest(f"{transport}: host2 fetches exactly the paths it lacks"):
                check_fetches_exactly_what_is_missing(urls["@URL@"], urls["@URL@"])

        with subtest("s3: host2 fetches exactly the paths it lacks"):
            host2.succeed(f"{S3_ENV} nix --extra-experimental-features nix-command store info --store '{S3_URL}'")
            check_fetches_exactly_what_is_missing(S3_URL, "s3://binary-cache", S3_ENV)

        with subtest("s3: the signed copy substitutes with require-sigs"):
            status, out = realise(
                S3_SIGNED_URL, f"--option require-sigs true --option trusted-public-keys '{PUBKEY}'", S3_ENV
            )
            assert status == 0, f"substituting the signed copy failed:\n{out}"
            assert f"copying path '{ROOT}' from 's3://signed-cache" in out, out
            host2.succeed(f"nix --extra-experimental-features nix-command path-info --sigs {ROOT} | grep -q test-key-1:")
            host2.succeed(f"nix-store --delete {ROOT}")

        with subtest("s3: the unsigned cache is refused with require-sigs"):
            status, out = realise(
                S3_URL, f"--option require-sigs true --option trusted-public-keys '{PUBKEY}'", S3_ENV
            )
            assert status != 0, f"the unsigned cache was accepted:\n{out}"
            assert any(r.search(out) for r in refusals()), f"no refusal message of scenario.json in:\n{out}"
            host2.fail(f"nix-store --check-validity {ROOT}")

        for transport, urls in transports.items():
            for case in scenario["cases"]:
                if transport not in case["transports"]:
                    continue
                with subtest(f"{transport}: {case['name']}"):
                    work = f"/tmp/work/{transport}-{case['name']}"
                    host2.succeed(f"rm -rf {work} && mkdir -p {work}")
                    client = {
                        "@ROOT@": ROOT,
                        "@DRV@": DRV,
                        "@COMPRESSION@": COMPRESSION,
                        "@PUBKEY@": PUBKEY,
                        "@WORK@": work,
                        **urls,
                    }
                    for step in case["steps"]:
                        run_step(host2, step, client)
      '';
    };
in
lib.genAttrs [
  "zstd"
  "xz"
  "bzip2"
  "none"
] mkTest
