// Package e2e drives the example servers in a real browser (headless
// Chromium through the DevTools protocol). It is a module of its own so
// that its dependencies stay out of the library's go.mod and go.sum.
package e2e
