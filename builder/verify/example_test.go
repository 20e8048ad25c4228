package verify_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
)

// Checking a cache: every problem is reported, with the file it is in.
// This one lacks the NAR its narinfo names.
func ExampleCache() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := cachedir.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	d.Init(cachedir.Info{StoreDir: "/nix/store"})
	os.WriteFile(filepath.Join(dir, "0fbgd045z0d4icpbc2yyz4gx48ak44la.narinfo"), []byte(`StorePath: /nix/store/0fbgd045z0d4icpbc2yyz4gx48ak44la-greet
URL: nar/1ds4yba1pmvqxg3rbqm9rgw9mhbgpzj9qi5zkq3zgxjcc7crafv6.nar.zst
Compression: zstd
FileHash: sha256:1ds4yba1pmvqxg3rbqm9rgw9mhbgpzj9qi5zkq3zgxjcc7crafv6
FileSize: 120
NarHash: sha256:0mcl1blr1ri2an1k8b1ar7jdvk5rvcvbyiv0g1j2vcrvg7bbb2dz
NarSize: 288
References: 
`), 0o644)

	stats, err := verify.Cache(context.Background(), verify.Options{Dir: dir}, func(p verify.Problem) {
		rel, _ := filepath.Rel(dir, p.File)
		fmt.Printf("%s: %s\n", rel, p.Msg)
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(stats.NarInfos, "narinfo,", stats.Problems, "problem")
	// Output:
	// 0fbgd045z0d4icpbc2yyz4gx48ak44la.narinfo: NAR nar/1ds4yba1pmvqxg3rbqm9rgw9mhbgpzj9qi5zkq3zgxjcc7crafv6.nar.zst is missing
	// 1 narinfo, 1 problem
}
