package narinfo

import "testing"

// Store paths and content addresses that Nix 2.8 made (nix-store --add,
// --add-fixed, a .drv), from nix path-info --json.
func TestContentAddressed(t *testing.T) {
	for _, tc := range []struct {
		path, ca string
		refs     []string
	}{
		{"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox", "fixed:r:sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29", nil},
		{"/nix/store/70w4wkn3i34v5q50155w3bh96ymp7x8a-flat", "fixed:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", nil},
		{"/nix/store/cypbqkj0z3phy5szbgrwhx9lpabbgly8-flat", "fixed:sha1:kpcd173cq987hw957sx6m0868wv3x6d9", nil},
		{"/nix/store/dz0rdz31jnsfv1wdrv3nkm82w1ry0scl-flat", "fixed:r:sha1:309rcyrpi82p2kl4d3iv23lb3i6zq90k", nil},
		{"/nix/store/2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-hello.drv", "text:sha256:1307706awbvk0vd3vf1mqjfbxziavn7p12awkn90q92lm7r49q30",
			[]string{"vrap3imzjz1q09j3dqcg8a1fjz5ml9v8-libgreet.drv", "71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"}},
	} {
		ni := &NarInfo{StorePath: tc.path, CA: tc.ca, References: tc.refs}
		ok, err := ContentAddressed(ni, "/nix/store")
		if err != nil || !ok {
			p, _ := caStorePath(ni, "/nix/store")
			t.Errorf("%s: ContentAddressed = %v, %v (computed %s)", tc.path, ok, err, p)
		}
		// Any change to name, references or hash breaks it.
		ni.References = append(ni.References, "00000000000000000000000000000000-x")
		if ok, _ := ContentAddressed(ni, "/nix/store"); ok {
			t.Errorf("%s: still content-addressed with an extra reference", tc.path)
		}
	}
	if ok, err := ContentAddressed(&NarInfo{StorePath: "/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"}, "/nix/store"); ok || err != nil {
		t.Errorf("no CA: %v, %v", ok, err)
	}
	if _, err := ContentAddressed(&NarInfo{StorePath: "/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox", CA: "git:sha1:abc"}, "/nix/store"); err == nil {
		t.Errorf("unknown CA method accepted")
	}
}
