package narinfo

// DecodeBase64 is Nix's lenient base64 decoding, for the tests.
var DecodeBase64 = decodeBase64
