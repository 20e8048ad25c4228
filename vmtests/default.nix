# NixOS VM tests of mkBinaryCache, one per compression:
#
#   nix-build vmtests -A zstd          # or: nix build .#checks.x86_64-linux.vm-zstd
#
# host1 has the cache of `hello` (built by our mkBinaryCache) and its closure in
# its store; host2 is a client whose store lacks `hello`. What runs on each host
# and what the output must show is in ./scenario.json, shared with the local twin
# (namespaces instead of VMs). This file only supplies the machines, the
# placeholders and the two transports:
#   file: host1 copies the cache (and a signed copy) to host2 with `scp -r`;
#   http: nginx on host1 serves them, host2 uses http://host1/... URLs.
{
  pkgs ? import <nixpkgs> { },
}:

let
  # Use our mkBinaryCache even when handed a plain nixpkgs.
  pkgs' = if pkgs ? mkbinarycache then pkgs else pkgs.extend (import ../nix/overlay.nix);
  inherit (pkgs') lib;

  root = pkgs'.hello;
  rootPath = builtins.unsafeDiscardStringContext (toString root);
  rootDrv = builtins.unsafeDiscardStringContext root.drvPath;

  publicKey = lib.fileContents ./test-key-1.pub;

  mkTest =
    compression:
    let
      cache = pkgs'.mkBinaryCache {
        rootPaths = [ root ];
        inherit compression;
      };
    in
    pkgs'.testers.runNixOSTest {
      name = "mkbinarycache-${compression}";

      nodes.host1 = {
        environment.systemPackages = [ pkgs'.mkbinarycache ];
        # Registers the cache in host1's store, and with it the closure of
        # `hello` (the cache's output refers to every path it holds).
        system.extraDependencies = [ cache ];
        # A fixed, public test key: never use it for anything else.
        environment.etc."mkbinarycache-test/test-key-1.sec".source = ./test-key-1.sec;

        services.nginx = {
          enable = true;
          virtualHosts.host1 = {
            default = true;
            root = "/srv/www";
          };
        };
        networking.firewall.allowedTCPPorts = [ 80 ];
        systemd.tmpfiles.rules = [
          "d /srv/www 0755 root root -"
          "d /srv/work 0755 root root -"
        ];
        nix.settings.substituters = lib.mkForce [ ];
      };

      nodes.host2 = {
        services.openssh.enable = true;
        environment.systemPackages = [ pkgs'.curl ];
        # Nothing but the caches under test, and no building: whatever host2
        # gets, it gets by substitution (the local twin's host2 has the same).
        nix.settings.substituters = lib.mkForce [ ];
        nix.settings.max-jobs = 0;
      };

      testScript = ''
        import json
        import re
        import shlex

        scenario = json.load(open("${./scenario.json}"))

        ROOT = ${builtins.toJSON rootPath}
        DRV = ${builtins.toJSON rootDrv}
        CACHE = ${builtins.toJSON (builtins.unsafeDiscardStringContext (toString cache))}
        COMPRESSION = ${builtins.toJSON compression}
        PUBKEY = ${builtins.toJSON publicKey}


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


        start_all()
        host1.wait_for_unit("multi-user.target")
        host2.wait_for_unit("multi-user.target")

        with subtest("server: check the cache and sign a copy"):
            server = {
                "@ROOT@": ROOT,
                "@CACHE@": CACHE,
                "@COMPRESSION@": COMPRESSION,
                "@WORK@": "/srv/work",
                "@SECKEY@": "/etc/mkbinarycache-test/test-key-1.sec",
                "@MKBINARYCACHE@": "${lib.getExe pkgs'.mkbinarycache}",
            }
            for step in scenario["server"]["prepare"]:
                run_step(host1, step, server)

        with subtest("publish over http"):
            host1.succeed("ln -sfn " + CACHE + " /srv/www/cache")
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
            host1.succeed(f"scp {ssh_opts} -r {CACHE} host2:/tmp/cache")
            host1.succeed(f"scp {ssh_opts} -r /srv/work/signed host2:/tmp/signed-cache")

        # The root must not be valid on host2 yet: its files may be visible
        # there (the VMs share the host's store read-only), but Nix does not
        # know them, which is what each case checks first.
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
