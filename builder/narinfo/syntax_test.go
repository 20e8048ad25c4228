package narinfo_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// The narinfo every syntax case varies: a valid one, as Nix writes it.
const (
	basePath = "/nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello"
	baseHash = "70gvzv4w0ffkb6chy0ayi86xcnc4i950"
	narHash  = "sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r"
	ref1     = "71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"
	ref2     = "li6rjy2h1x3kl5l3zqbywafhz3h5dw2a-libgreet"
)

var base = testkit.HelloUnsigned

// with returns base with the line of key replaced by raw (the whole line,
// "\n" included); "" drops it.
func with(key, raw string) string {
	var b strings.Builder
	found := false
	for _, l := range strings.SplitAfter(base, "\n") {
		if strings.HasPrefix(l, key+": ") {
			b.WriteString(raw)
			found = true
			continue
		}
		b.WriteString(l)
	}
	if !found {
		panic("no " + key + " in base")
	}
	return b.String()
}

// set returns base with key's value replaced.
func set(key, value string) string { return with(key, key+": "+value+"\n") }

// before returns base with raw inserted before key's line.
func before(key, raw string) string {
	i := strings.Index(base, "\n"+key+": ")
	if i < 0 {
		panic("no " + key + " in base")
	}
	return base[:i+1] + raw + base[i+1:]
}

// Other forms of narHash, as Nix accepts them.
var narHashForms = func() map[string]string {
	h, err := nixhash.ParseAny(narHash, nil)
	if err != nil {
		panic(err)
	}
	b64 := base64.StdEncoding.EncodeToString(h.Digest())
	return map[string]string{
		"base16": h.Format(nixhash.Base16, true),
		"BASE16": "sha256:" + strings.ToUpper(h.Format(nixhash.Base16, false)),
		"base64": "sha256:" + b64,
		"sri":    "sha256-" + b64,
	}
}()

// syntaxCase is one narinfo and whether Nix accepts it: Nix 2.8 and the
// newest Nix both (`nix path-info --store file://…` exits 0 with it as
// <hash>.narinfo). Parse, with the checks its callers add (the StorePath
// is in the store directory and names this file), must agree.
type syntaxCase struct {
	name string
	text string
	ok   bool
}

var syntaxCases = func() []syntaxCase {
	long := func(n int) string { return strings.Repeat("a", n) }
	hashFm := narHashForms
	cs := []syntaxCase{
		{name: "valid", text: base, ok: true},

		// Line structure.
		{name: "CRLF", text: strings.ReplaceAll(base, "\n", "\r\n")},
		{name: "CR only", text: strings.ReplaceAll(base, "\n", "\r")},
		{name: "no final newline", text: strings.TrimSuffix(base, "\n")},
		{name: "unknown last line without newline", text: base + "Foo: bar"},
		{name: "empty line at the end", text: base + "\n"},
		{name: "empty line at the start", text: "\n" + base},
		{name: "empty line eats URL", text: before("URL", "\n")},
		{name: "empty line eats Deriver", text: before("Deriver", "\n"), ok: true},
		{name: "line without colon eats Deriver", text: before("Deriver", "garbage\n"), ok: true},
		{name: "line without colon eats NarHash", text: before("NarHash", "garbage\n")},
		{name: "no space after colon: Compression", text: with("Compression", "Compression:xnone\n"), ok: true},
		{name: "no space after colon: NarSize loses a digit", text: with("NarSize", "NarSize:9624\n"), ok: true},
		{name: "no space after colon: NarSize empty", text: with("NarSize", "NarSize:6\n")},
		{name: "References: then newline eats Deriver", text: with("References", "References:\n")},
		{name: "References: then newline at the end", text: strings.Replace(base, "References: "+ref1+" "+ref2+"\n", "", 1) + "References:\n"},
		{name: "unknown key then newline eats NarHash", text: before("NarHash", "Foo:\n")},
		{name: "unknown key then newline eats Deriver", text: before("Deriver", "Foo:\n"), ok: true},
		{name: "CRLF on an unknown line", text: base + "Foo: bar\r\n", ok: true},
		{name: "key with trailing space", text: with("StorePath", "StorePath : "+basePath+"\n")},
		{name: "key with leading space", text: with("StorePath", " StorePath: "+basePath+"\n")},
		{name: "lower-case key", text: with("StorePath", "storepath: "+basePath+"\n")},
		{name: "byte order mark", text: "\ufeff" + base},
		{name: "empty file", text: ""},
		{name: "only a newline", text: "\n"},
		{name: "unknown key", text: base + "Foo: bar\n", ok: true},
		{name: "unknown key, empty value", text: base + "Foo: \n", ok: true},
		{name: "unknown key, no colon, at the end", text: base + "Foo\n"},
		{name: "NUL in URL", text: set("URL", "nar/x\x00y.nar"), ok: true},
		{name: "CR in URL", text: set("URL", "nar/x.nar\r"), ok: true},
		{name: "CR in Compression", text: set("Compression", "none\r"), ok: true},
		{name: "unknown Compression", text: set("Compression", "lzip"), ok: true},
		{name: "Provenance garbage", text: base + "Provenance: {\n", ok: true},
		{name: "System", text: base + "System: x86_64-linux\n", ok: true},
		{name: "System empty", text: base + "System: \n", ok: true},

		// Repeated keys.
		{name: "StorePath twice", text: before("URL", "StorePath: "+basePath+"\n"), ok: true},
		{name: "URL twice", text: before("Compression", "URL: nar/other.nar\n"), ok: true},
		{name: "URL twice, the second empty", text: before("Compression", "URL: \n")},
		{name: "NarHash twice", text: before("NarSize", "NarHash: "+hashFm["base16"]+"\n"), ok: true},
		{name: "NarSize twice, the second 0", text: before("References", "NarSize: 0\n")},
		{name: "References twice", text: before("Deriver", "References: "+ref1+"\n")},
		{name: "References twice, the second empty", text: before("Deriver", "References: \n")},
		{name: "References twice, the first empty", text: before("References", "References: \n"), ok: true},
		{name: "References empty twice", text: set("References", "") + "References: \n", ok: true},
		{name: "Deriver twice", text: base + "Deriver: 2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-other.drv\n", ok: true},
		{name: "Compression twice", text: base + "Compression: xz\n", ok: true},
		{name: "Sig twice", text: base + "Sig: a:AAAA\nSig: a:AAAA\n", ok: true},
		{name: "Sig twice, the second malformed", text: base + "Sig: a:AAAA\nSig: a\n"},
		{name: "CA twice", text: base + "CA: fixed:r:" + narHash + "\nCA: fixed:r:" + narHash + "\n"},
		{name: "CA empty then set", text: base + "CA: \nCA: fixed:r:" + narHash + "\n", ok: true},
		{name: "CA set then empty", text: base + "CA: fixed:r:" + narHash + "\nCA: \n"},

		// Missing and empty fields.
		{name: "no StorePath", text: with("StorePath", "")},
		{name: "no URL", text: with("URL", "")},
		{name: "no Compression", text: with("Compression", ""), ok: true},
		{name: "no FileHash", text: with("FileHash", ""), ok: true},
		{name: "no FileSize", text: with("FileSize", ""), ok: true},
		{name: "no NarHash", text: with("NarHash", "")},
		{name: "no NarSize", text: with("NarSize", "")},
		{name: "no References", text: with("References", ""), ok: true},
		{name: "no Deriver", text: with("Deriver", ""), ok: true},
		{name: "empty StorePath", text: set("StorePath", "")},
		{name: "empty URL", text: set("URL", "")},
		{name: "empty Compression", text: set("Compression", ""), ok: true},
		{name: "empty FileHash", text: set("FileHash", "")},
		{name: "empty FileSize", text: set("FileSize", "")},
		{name: "empty NarHash", text: set("NarHash", "")},
		{name: "empty NarSize", text: set("NarSize", "")},
		{name: "empty References", text: set("References", ""), ok: true},
		{name: "empty Deriver", text: set("Deriver", "")},
		{name: "empty Sig", text: base + "Sig: \n"},
		{name: "empty CA", text: base + "CA: \n", ok: true},
		{name: "NarSize 0", text: set("NarSize", "0")},
		{name: "FileSize 0", text: set("FileSize", "0"), ok: true},

		// Sizes.
		{name: "NarSize +", text: set("NarSize", "+624"), ok: true},
		{name: "NarSize ++", text: set("NarSize", "++624")},
		{name: "NarSize + alone", text: set("NarSize", "+")},
		{name: "NarSize -", text: set("NarSize", "-624")},
		{name: "NarSize leading space", text: set("NarSize", " 624")},
		{name: "NarSize trailing space", text: set("NarSize", "624 ")},
		{name: "NarSize CR", text: set("NarSize", "624\r")},
		{name: "NarSize leading zeros", text: set("NarSize", "000624"), ok: true},
		{name: "NarSize max uint64", text: set("NarSize", "18446744073709551615"), ok: true},
		{name: "NarSize overflow", text: set("NarSize", "18446744073709551616")},
		{name: "NarSize hex", text: set("NarSize", "0x270")},
		{name: "NarSize underscore", text: set("NarSize", "6_24")},
		{name: "NarSize exponent", text: set("NarSize", "6e2")},
		{name: "FileSize +", text: set("FileSize", "+624"), ok: true},
		{name: "FileSize -", text: set("FileSize", "-1")},
		{name: "FileSize overflow", text: set("FileSize", "99999999999999999999")},
		{name: "FileSize letters", text: set("FileSize", "many")},

		// Hashes.
		{name: "NarHash base16", text: set("NarHash", hashFm["base16"]), ok: true},
		{name: "NarHash BASE16", text: set("NarHash", hashFm["BASE16"]), ok: true},
		{name: "NarHash base64", text: set("NarHash", hashFm["base64"]), ok: true},
		{name: "NarHash SRI", text: set("NarHash", hashFm["sri"]), ok: true},
		{name: "NarHash SRI without padding", text: set("NarHash", strings.TrimSuffix(hashFm["sri"], "=")), ok: true},
		{name: "NarHash SRI, garbage after =", text: set("NarHash", hashFm["sri"]+"!!"), ok: true},
		{name: "NarHash SRI, CR", text: set("NarHash", strings.TrimSuffix(hashFm["sri"], "=")+"\r")},
		{name: "NarHash SRI, invalid character", text: set("NarHash", "sha256-!"+hashFm["sri"][8:])},
		{name: "NarHash SRI, short", text: set("NarHash", hashFm["sri"][:30])},
		{name: "NarHash base64 with :, short", text: set("NarHash", hashFm["base64"][:30])},
		{name: "NarHash without algorithm", text: set("NarHash", strings.TrimPrefix(narHash, "sha256:"))},
		{name: "NarHash unknown algorithm", text: set("NarHash", "sha3:"+strings.TrimPrefix(narHash, "sha256:"))},
		{name: "NarHash upper-case algorithm", text: set("NarHash", "SHA256:"+strings.TrimPrefix(narHash, "sha256:"))},
		{name: "NarHash blake3", text: set("NarHash", "blake3:"+strings.TrimPrefix(narHash, "sha256:"))},
		{name: "NarHash sha1 nix32", text: set("NarHash", "sha1:"+strings.Repeat("0", 32)), ok: true},
		{name: "NarHash md5 base16", text: set("NarHash", "md5:"+strings.Repeat("a", 32)), ok: true},
		{name: "NarHash sha512 SRI", text: set("NarHash", "sha512-"+base64.StdEncoding.EncodeToString(make([]byte, 64))), ok: true},
		{name: "NarHash wrong length", text: set("NarHash", narHash[:len(narHash)-1])},
		{name: "NarHash nix32 with e", text: set("NarHash", narHash[:len(narHash)-1]+"e")},
		{name: "NarHash nix32 overflowing bits", text: set("NarHash", "sha256:z"+narHash[8:])},
		{name: "NarHash base16 with g", text: set("NarHash", hashFm["base16"][:len(hashFm["base16"])-1]+"g")},
		{name: "NarHash trailing space", text: set("NarHash", narHash+" ")},
		{name: "NarHash CR", text: set("NarHash", narHash+"\r")},
		{name: "FileHash SRI", text: set("FileHash", hashFm["sri"]), ok: true},
		{name: "FileHash malformed", text: set("FileHash", "sha256:xyz")},
		{name: "FileHash CR", text: set("FileHash", narHash+"\r")},

		// StorePath.
		{name: "StorePath double slash", text: set("StorePath", "/nix/store//"+path.Base(basePath)), ok: true},
		{name: "StorePath dot", text: set("StorePath", "/nix/store/./"+path.Base(basePath)), ok: true},
		{name: "StorePath dot-dot", text: set("StorePath", "/nix/store/../store/"+path.Base(basePath)), ok: true},
		{name: "StorePath trailing slash", text: set("StorePath", basePath+"/"), ok: true},
		{name: "StorePath relative", text: set("StorePath", strings.TrimPrefix(basePath, "/"))},
		{name: "StorePath base name only", text: set("StorePath", path.Base(basePath))},
		{name: "StorePath other store", text: set("StorePath", "/gnu/store/"+path.Base(basePath))},
		{name: "StorePath below a store path", text: set("StorePath", basePath+"/bin")},
		{name: "StorePath CR", text: set("StorePath", basePath+"\r")},
		{name: "StorePath trailing space", text: set("StorePath", basePath+" ")},
		{name: "StorePath hash with e", text: set("StorePath", "/nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i95e-hello")},
		{name: "StorePath short hash", text: set("StorePath", "/nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i95-hello")},
		{name: "StorePath no name", text: set("StorePath", "/nix/store/"+baseHash+"-")},
		{name: "StorePath no dash", text: set("StorePath", "/nix/store/"+baseHash+"_hello"), ok: true},
		{name: "StorePath name with space", text: set("StorePath", basePath+" x")},
		{name: "StorePath name starting with .", text: set("StorePath", "/nix/store/"+baseHash+"-.hello"), ok: true},
		{name: "StorePath name .", text: set("StorePath", "/nix/store/"+baseHash+"-.")},
		{name: "StorePath name ..", text: set("StorePath", "/nix/store/"+baseHash+"-..")},
		{name: "StorePath name ...", text: set("StorePath", "/nix/store/"+baseHash+"-..."), ok: true},
		{name: "StorePath name .-x", text: set("StorePath", "/nix/store/"+baseHash+"-.-x")},
		{name: "StorePath name ..-x", text: set("StorePath", "/nix/store/"+baseHash+"-..-x")},
		{name: "StorePath name -", text: set("StorePath", "/nix/store/"+baseHash+"--"), ok: true},
		{name: "StorePath name of 211 characters", text: set("StorePath", "/nix/store/"+baseHash+"-"+long(211)), ok: true},
		{name: "StorePath name of 212 characters", text: set("StorePath", "/nix/store/"+baseHash+"-"+long(212))},
		{name: "StorePath name with allowed punctuation", text: set("StorePath", "/nix/store/"+baseHash+"-a+b-c.d_e?f=g"), ok: true},

		// References and Deriver.
		{name: "References one", text: set("References", ref1), ok: true},
		{name: "References self", text: set("References", path.Base(basePath)), ok: true},
		{name: "References double space", text: set("References", ref1+"  "+ref2), ok: true},
		{name: "References leading and trailing space", text: set("References", " "+ref1+" "+ref2+" "), ok: true},
		{name: "References repeated", text: set("References", ref1+" "+ref1), ok: true},
		{name: "References tab", text: set("References", ref1+"\t"+ref2)},
		{name: "References full path", text: set("References", "/nix/store/"+ref1)},
		{name: "References CR", text: set("References", ref1+" "+ref2+"\r")},
		{name: "References bad hash", text: set("References", "71fc7s32zl20dc955bhghy5dvalm7ndE-busybox")},
		{name: "References bad name", text: set("References", "71fc7s32zl20dc955bhghy5dvalm7ndz-busy/box")},
		{name: "References no name", text: set("References", "71fc7s32zl20dc955bhghy5dvalm7ndz-")},
		{name: "References no dash", text: set("References", "71fc7s32zl20dc955bhghy5dvalm7ndz_busybox"), ok: true},
		{name: "References name starting with .", text: set("References", "71fc7s32zl20dc955bhghy5dvalm7ndz-.busybox"), ok: true},
		{name: "References name ..", text: set("References", "71fc7s32zl20dc955bhghy5dvalm7ndz-..")},
		{name: "Deriver unknown-deriver", text: set("Deriver", "unknown-deriver"), ok: true},
		{name: "Deriver full path", text: set("Deriver", "/nix/store/2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-hello.drv")},
		{name: "Deriver CR", text: set("Deriver", "2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-hello.drv\r")},
		{name: "Deriver not a derivation", text: set("Deriver", "2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-hello"), ok: true},
		{name: "Deriver bad", text: set("Deriver", "garbage")},

		// Content addresses.
		{name: "CA fixed:r:sha256", text: base + "CA: fixed:r:" + narHash + "\n", ok: true},
		{name: "CA fixed:sha256", text: base + "CA: fixed:" + narHash + "\n", ok: true},
		{name: "CA fixed:r:sha256 base16", text: base + "CA: fixed:r:" + hashFm["base16"] + "\n", ok: true},
		{name: "CA fixed:r:sha256 base64", text: base + "CA: fixed:r:" + hashFm["base64"] + "\n", ok: true},
		{name: "CA fixed:r:sha256 SRI", text: base + "CA: fixed:r:" + hashFm["sri"] + "\n"},
		{name: "CA fixed:r:sha1", text: base + "CA: fixed:r:sha1:" + strings.Repeat("0", 32) + "\n", ok: true},
		{name: "CA text:sha256", text: base + "CA: text:" + narHash + "\n", ok: true},
		{name: "CA text:sha1", text: base + "CA: text:sha1:" + strings.Repeat("0", 32) + "\n"},
		{name: "CA text:r:sha256", text: base + "CA: text:r:" + narHash + "\n"},
		{name: "CA fixed:git:sha1", text: base + "CA: fixed:git:sha1:" + strings.Repeat("0", 32) + "\n"},
		{name: "CA fixed:r:r:sha256", text: base + "CA: fixed:r:r:" + narHash + "\n"},
		{name: "CA nar:sha256", text: base + "CA: nar:" + narHash + "\n"},
		{name: "CA garbage", text: base + "CA: garbage\n"},
		{name: "CA fixed:", text: base + "CA: fixed:\n"},
		{name: "CA fixed:r:sha256 short", text: base + "CA: fixed:r:sha256:0v7z\n"},
		{name: "CA unknown algorithm", text: base + "CA: fixed:r:sha3:" + strings.TrimPrefix(narHash, "sha256:") + "\n"},
		{name: "CA CR", text: base + "CA: fixed:r:" + narHash + "\r\n"},

		// Signatures (opaque to the parser).
		{name: "Sig", text: base + "Sig: " + testkit.HelloSig + "\n", ok: true},
		{name: "Sig without colon", text: base + "Sig: garbage\n"},
		{name: "Sig without name", text: base + "Sig: :AAAA\n"},
		{name: "Sig without signature", text: base + "Sig: a:\n"},
		{name: "Sig of 6 bits", text: base + "Sig: a:A\n"},
		{name: "Sig of one byte", text: base + "Sig: a:AA\n", ok: true},
		{name: "Sig of three bytes", text: base + "Sig: a:AAAA\n", ok: true},
		{name: "Sig padded", text: base + "Sig: a:AA==\n", ok: true},
		{name: "Sig garbage after =", text: base + "Sig: a:AA=!!\n", ok: true},
		{name: "Sig invalid base64", text: base + "Sig: a:AA!A\n"},
		{name: "Sig second colon", text: base + "Sig: a:b:AAAA\n"},
		{name: "Sig space", text: base + "Sig: a: AAAA\n"},
		{name: "Sig CR", text: base + "Sig: a:AAAA\r\n"},
		{name: "Sig CR after the padding", text: base + "Sig: " + testkit.HelloSig + "\r\n", ok: true},
		{name: "Sig CR after =", text: base + "Sig: a:AA==\r\n", ok: true},
	}
	return cs
}()

// ourVerdict is what this package, with its callers' checks, says of a
// case: nil if the narinfo is used.
func ourVerdict(c syntaxCase) error {
	ni, _, err := narinfo.Parse([]byte(c.text))
	if err != nil {
		return err
	}
	if d := path.Dir(ni.StorePath); d != "/nix/store" {
		return fmt.Errorf("StorePath not in /nix/store but %s", d)
	}
	return nil
}

// TestParseSyntax checks Parse's verdict on each case, the verdict Nix has
// (TestParseSyntaxNix checks that).
func TestParseSyntax(t *testing.T) {
	names := map[string]bool{}
	for _, c := range syntaxCases {
		if names[c.name] {
			t.Errorf("case %q twice", c.name)
		}
		names[c.name] = true
		err := ourVerdict(c)
		if c.ok && err != nil {
			t.Errorf("%s: Nix accepts it, Parse: %v", c.name, err)
		} else if !c.ok && err == nil {
			t.Errorf("%s: Nix rejects it, Parse accepts it", c.name)
		}
	}
}

// TestParseSyntaxNix has Nix 2.8 and the newest Nix judge every case:
// `nix path-info --store file://DIR` on a cache holding the case as its
// only narinfo, with a fresh cache home each (Nix caches narinfo lookups).
// The cases run in one script per version. A case is accepted when every
// version accepts it; that must be the case's verdict.
func TestParseSyntaxNix(t *testing.T) {
	// The oldest and the newest Nix bracket the versions between (2.26
	// agreed with one of them on every case, and costs as much again).
	all := nixtest.Versions(t)
	versions := []nixtest.Version{all[0], all[len(all)-1]}
	type result struct {
		ok   bool
		out  string // stderr
		json []byte // stdout: path-info --json
	}
	verdicts := make([]map[string]result, len(versions))
	var wg sync.WaitGroup
	for i, v := range versions {
		v.Require(t)
		dir := t.TempDir()
		for j, c := range syntaxCases {
			cache := filepath.Join(dir, strconv.Itoa(j), "cache")
			testkit.Must(t, os.MkdirAll(cache, 0o755))
			testkit.Must(t, os.WriteFile(filepath.Join(cache, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644))
			testkit.Must(t, os.WriteFile(filepath.Join(cache, baseHash+".narinfo"), []byte(c.text), 0o644))
		}
		// Eight cases at a time: each waits mostly on its fresh SQLite
		// cache database's fsyncs.
		script := fmt.Sprintf(`cd %s || exit 1
n=0
for d in */; do
	d=${d%%/}
	mkdir "$d/home"
	(XDG_CACHE_HOME="$PWD/$d/home/.cache" HOME="$PWD/$d/home" \
		nix --extra-experimental-features nix-command path-info --json --store "file://$PWD/$d/cache" %s >"$d/json" 2>"$d/out"
	echo $? >"$d/rc") &
	n=$((n+1))
	[ $((n %% 8)) -ne 0 ] || wait
done
wait`, nixtest.ShellQuote(dir), basePath)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := v.FreshStore(t, script)
			if err != nil {
				t.Errorf("Nix %s: %v\n%s", v.Name, err, out)
				return
			}
			m := map[string]result{}
			for j, c := range syntaxCases {
				rc, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(j), "rc"))
				if err != nil {
					t.Errorf("Nix %s: %s: no exit status: %v", v.Name, c.name, err)
					continue
				}
				out, _ := os.ReadFile(filepath.Join(dir, strconv.Itoa(j), "out"))
				js, _ := os.ReadFile(filepath.Join(dir, strconv.Itoa(j), "json"))
				m[c.name] = result{ok: strings.TrimSpace(string(rc)) == "0", out: string(out), json: js}
			}
			verdicts[i] = m
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// A rejection must be Nix's parser's, not something around it.
	valid := regexp.MustCompile(`(?i)corrupt|invalid|not valid|not in the Nix store|illegal|hash|store path|not an absolute path|content address|too short|does not include|must not be empty|assert|no longer than`)
	for _, c := range syntaxCases {
		ok := true
		var per []string
		for i, v := range versions {
			r := verdicts[i][c.name]
			ok = ok && r.ok
			per = append(per, fmt.Sprintf("Nix %s: ok=%v %s", v.Name, r.ok, strings.TrimSpace(r.out)))
			if !r.ok && !valid.MatchString(r.out) {
				t.Errorf("%s: Nix %s fails for an unexpected reason:\n%s", c.name, v.Name, r.out)
			}
			if r.ok && c.ok {
				// What Nix read must be what Parse read.
				theirs, err := nixView(r.json)
				if err != nil {
					t.Errorf("%s: Nix %s: %v", c.name, v.Name, err)
					continue
				}
				if d := cmp.Diff(ourView(t, c.text, theirs.Compression != ""), theirs); d != "" {
					t.Errorf("%s: Parse and Nix %s read different values (-Parse +Nix):\n%s", c.name, v.Name, d)
				}
			}
		}
		if verdicts[0][c.name].ok != verdicts[len(versions)-1][c.name].ok {
			t.Logf("%s: Nix versions disagree:\n%s", c.name, strings.Join(per, "\n"))
		}
		if ok != c.ok {
			t.Errorf("%s: the table says ok=%v, Nix:\n%s", c.name, c.ok, strings.Join(per, "\n"))
		}
	}
}

// pathInfo is what `nix path-info --json` shows of a narinfo, in one form
// for every Nix version (hashes SRI, content addresses with nix32 hashes,
// signatures with their base64 decoded and encoded again, sets sorted).
type pathInfo struct {
	Path         string   `json:"path"`
	NarHash      string   `json:"narHash"`
	NarSize      uint64   `json:"narSize"`
	References   []string `json:"references"`
	CA           string   `json:"ca"`
	Deriver      string   `json:"deriver"`
	Signatures   []string `json:"signatures"`
	URL          string   `json:"url"`
	DownloadHash string   `json:"downloadHash"`
	DownloadSize uint64   `json:"downloadSize"`
	Compression  string   `json:"compression"` // newer Nix only
}

// nixView reads path-info --json output: a list of one (Nix 2.8) or an
// object keyed by the path (later versions).
func nixView(data []byte) (pathInfo, error) {
	var list []pathInfo
	if err := json.Unmarshal(data, &list); err == nil && len(list) == 1 {
		return list[0].norm()
	}
	var byPath map[string]pathInfo
	if err := json.Unmarshal(data, &byPath); err != nil || len(byPath) != 1 {
		return pathInfo{}, fmt.Errorf("path-info --json: not one path: %s", data)
	}
	for p, v := range byPath {
		v.Path = p
		return v.norm()
	}
	panic("unreachable")
}

func (p pathInfo) norm() (pathInfo, error) {
	for _, h := range []*string{&p.NarHash, &p.DownloadHash} {
		if *h == "" {
			continue
		}
		parsed, err := nixhash.ParseAny(*h, nil)
		if err != nil {
			return p, err
		}
		*h = parsed.Format(nixhash.SRI, true)
	}
	if p.CA != "" {
		var err error
		if p.CA, err = normCA(p.CA); err != nil {
			return p, err
		}
	}
	slices.Sort(p.References)
	p.References = slices.Compact(p.References)
	// Nix 2.8 shows signatures as written, later versions decoded and
	// encoded again.
	for i, sig := range p.Signatures {
		name, b64, _ := strings.Cut(sig, ":")
		d, err := narinfo.DecodeBase64(b64)
		if err != nil {
			return p, fmt.Errorf("signature %q: %w", sig, err)
		}
		p.Signatures[i] = name + ":" + base64.StdEncoding.EncodeToString(d)
	}
	slices.Sort(p.Signatures)
	p.Signatures = slices.Compact(p.Signatures)
	if len(p.References) == 0 {
		p.References = nil
	}
	if len(p.Signatures) == 0 {
		p.Signatures = nil
	}
	return p, nil
}

// normCA writes a content address's hash in nix32, as Nix renders it.
func normCA(ca string) (string, error) {
	for _, m := range []string{"text:", "fixed:r:", "fixed:"} {
		if rest, ok := strings.CutPrefix(ca, m); ok {
			h, err := nixhash.ParseAny(rest, nil)
			if err != nil {
				return "", fmt.Errorf("CA %q: %w", ca, err)
			}
			return m + h.Format(nixhash.NixBase32, true), nil
		}
	}
	return "", fmt.Errorf("CA %q: unknown method", ca)
}

// ourView is pathInfo of what Parse reads of text.
func ourView(t *testing.T, text string, compression bool) pathInfo {
	t.Helper()
	ni, bad, err := narinfo.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := pathInfo{Path: ni.StorePath, NarHash: ni.NarHash.Format(nixhash.SRI, true), NarSize: ni.NarSize,
		CA: ni.CA, URL: ni.URL, DownloadSize: ni.FileSize}
	if ni.FileHash != nil {
		p.DownloadHash = ni.FileHash.Format(nixhash.SRI, true)
	}
	if ni.Deriver != "" {
		p.Deriver = "/nix/store/" + ni.Deriver
	}
	if compression {
		p.Compression = ni.Compression
	}
	for _, r := range ni.References {
		p.References = append(p.References, "/nix/store/"+r)
	}
	for _, s := range ni.Signatures {
		p.Signatures = append(p.Signatures, s.String())
	}
	p.Signatures = append(p.Signatures, bad...)
	p, err = p.norm()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
