module github.com/mkbinarycache/mkbinarycache

go 1.25.0

require (
	github.com/dsnet/compress v0.0.1
	github.com/google/go-cmp v0.7.0
	github.com/klauspost/compress v1.20.3
	github.com/nix-community/go-nix v0.0.0-20250101154619-4bdde671e0a1
	github.com/ulikunitz/xz v0.5.17
)

require golang.org/x/sys v0.47.0 // indirect
