package authn

import "strings"

// maxDeviceBytes bounds SessionInfo.Device. The names deviceName builds
// are shorter: at most maxProductBytes of a product, " on " and the
// longest system name.
const maxDeviceBytes = 64

// maxProductBytes bounds the product name deviceName takes from a
// User-Agent it does not otherwise recognise.
const maxProductBytes = 32

// deviceName returns a readable name of the client of a User-Agent as
// cleanUserAgent leaves it (see SessionInfo.Device): "Firefox on Linux",
// "Safari on iPhone", "curl", or "" when nothing could be read. It only
// looks for fixed substrings in at most maxUserAgentBytes bytes, so its
// work is bounded whatever the client sent, and every name it returns is
// either a fixed one or a product name of letters, digits and "-_.+".
func deviceName(ua string) string {
	if len(ua) > maxUserAgentBytes {
		ua = ua[:maxUserAgentBytes]
	}
	browser, system := uaBrowser(ua), uaSystem(ua)
	if browser == "" {
		browser = uaProduct(ua)
	}
	var name string
	switch {
	case browser != "" && system != "":
		name = browser + " on " + system
	case browser != "":
		name = browser
	default:
		name = system
	}
	if len(name) > maxDeviceBytes { // cannot happen with the names above; a promise kept anyway
		name = name[:maxDeviceBytes]
	}
	return name
}

// uaBrowser names the browser of a User-Agent, or "". The order matters:
// browsers built on Chromium also say "Chrome/" and "Safari/", and Chrome
// says "Safari/", so the more particular tokens come first.
func uaBrowser(ua string) string {
	has := func(token string) bool { return strings.Contains(ua, token) }
	switch {
	case has("Edg/"), has("EdgA/"), has("EdgiOS/"), has("Edge/"):
		return "Edge"
	case has("OPR/"), has("OPiOS/"), has("Opera"):
		return "Opera"
	case has("SamsungBrowser/"):
		return "Samsung Internet"
	case has("Vivaldi/"):
		return "Vivaldi"
	case has("YaBrowser/"):
		return "Yandex Browser"
	case has("Firefox/"), has("FxiOS/"):
		return "Firefox"
	case has("HeadlessChrome/"):
		return "Headless Chrome"
	case has("Chromium/"):
		return "Chromium"
	case has("Chrome/"), has("CriOS/"):
		return "Chrome"
	case has("Trident/"), has("MSIE "):
		return "Internet Explorer"
	case has("Safari/") && !has("Android"):
		// Android's old stock browser also says Safari; it stays
		// unnamed rather than be called Safari.
		return "Safari"
	}
	return ""
}

// uaSystem names the operating system or device of a User-Agent, or "".
// iOS and iPadOS browsers say "like Mac OS X", Android ones "Linux", and
// Windows Phone "Android": the more particular tokens come first.
func uaSystem(ua string) string {
	has := func(token string) bool { return strings.Contains(ua, token) }
	switch {
	case has("iPhone"):
		return "iPhone"
	case has("iPad"):
		return "iPad"
	case has("iPod"):
		return "iPod"
	case has("Windows Phone"):
		return "Windows Phone"
	case has("Android"):
		return "Android"
	case has("CrOS"):
		return "ChromeOS"
	case has("Windows"):
		return "Windows"
	case has("Macintosh"), has("Mac OS X"):
		return "macOS"
	case has("FreeBSD"):
		return "FreeBSD"
	case has("OpenBSD"):
		return "OpenBSD"
	case has("NetBSD"):
		return "NetBSD"
	case has("Linux"), has("X11"):
		return "Linux"
	}
	return ""
}

// uaProduct returns the first product name of a User-Agent ("curl" of
// "curl/8.5.0", "python-requests" of "python-requests/2.31.0") when it is
// a plain name: a letter, then letters, digits and "-_.+", at most
// maxProductBytes bytes. "Mozilla", which nearly every browser sends
// first, names nothing.
func uaProduct(ua string) string {
	end := strings.IndexAny(ua, "/ ;(")
	if end < 0 {
		end = len(ua)
	}
	p := ua[:end]
	if p == "" || len(p) > maxProductBytes || p == "Mozilla" || !isLetter(p[0]) {
		return ""
	}
	for i := range len(p) {
		if c := p[i]; !isLetter(c) && !('0' <= c && c <= '9') && !strings.ContainsRune("-_.+", rune(c)) {
			return ""
		}
	}
	return p
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
