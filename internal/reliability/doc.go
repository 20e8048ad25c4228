// Package reliability holds the end-to-end reliability tests of issue 8,
// run against the real mkbinarycache binary and Nix: interrupted runs,
// determinism across --jobs and runs, and (with MKBINARYCACHE_SCALE=1) the
// scale measurements reported in docs/reliability.md.
package reliability
