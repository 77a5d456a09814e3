// Package testutil holds helpers for shoal's tests: root checks, test images, polling with a deadline.
package testutil
