// Package testkit is what the tests of every package share: fake store
// paths (Store, Path) and caches of them written by the real writer
// (WriteCache), paths added to Nix's store (AddToNix), reading a cache's
// narinfos (NarInfos), snapshots of a directory (Tree, Files), the checks of a
// cache (CheckCache, Problems, CheckNAR), and golden vectors made by real
// Nix. It imports the packages it drives (cache, verify, ...), so their
// tests that use it are external test packages.
package testkit

// TestSecret and TestPublic are a throwaway key made with `nix-store --generate-binary-cache-key test-1`,
// and narinfos that `nix copy` wrote and `nix store sign` signed with it
// (Nix 2.8): golden vectors for the fingerprint and the signature.
const (
	TestSecret = "test-1:ry47cmosKUlDckZ2QGEgKuSgeIcKvvA+B061K+LiB7kl8kF8mBYoabiY1Iu3KN1fOz5sPmV3vXveIN+lkczwLg=="
	TestPublic = "test-1:JfJBfJgWKGm4mNSLtyjdXzs+bD5ld7173iDfpZHM8C4="

	HelloUnsigned = `StorePath: /nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello
URL: nar/0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r.nar
Compression: none
FileHash: sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r
FileSize: 624
NarHash: sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r
NarSize: 624
References: 71fc7s32zl20dc955bhghy5dvalm7ndz-busybox li6rjy2h1x3kl5l3zqbywafhz3h5dw2a-libgreet
Deriver: 2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-hello.drv
`
	HelloSig = "test-1:wgyWF9w1m4ZRDaXeOGcjaIWYzt2GLWmx3KMBCR5x2ykAyRRpOUiiPbpFt2it/NL6ee2PVmB0iTTucMKvv7DNDw=="

	BusyboxUnsigned = `StorePath: /nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox
URL: nar/0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29.nar
Compression: none
FileHash: sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29
FileSize: 1982736
NarHash: sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29
NarSize: 1982736
References: 
CA: fixed:r:sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29
`
	BusyboxSig = "test-1:zhd7J5mVyAVqSx2eaXk7yz5gNybCOhiiwJ+KVqa/5XZGQMJCRvsbbbGH6DITeo5chTsnKfBPWC0lBGmj39EBAg=="
)
