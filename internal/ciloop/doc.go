// Package ciloop holds the tests of the CI workflow with real Nix: a cache
// kept between runs, filled by Nix's post-build-hook (mkbinarycache hook),
// substituted from by fresh stores, collected by gc and copied by copy,
// with the order of file operations that keeps it safe across power cuts.
package ciloop
