package cli

// Target exposes target to the tests of package cli_test, which dial as the
// CLI does.
var Target = target
