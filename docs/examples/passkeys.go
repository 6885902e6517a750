package examples

import "github.com/minimost/minimost/authn"

// passkeysConfig is docs/passkeys.md's configuration of passkeys.
func passkeysConfig() authn.Config {
	cfg := authn.Config{HTTP: authn.HTTPConfig{
		WebAuthnRPID:          "example.com",
		WebAuthnRPDisplayName: "Example",                       // "" means AppName, else the RP ID
		WebAuthnOrigins:       []string{"https://example.com"}, // "" means https:// + the RP ID
	}}
	return cfg
}
