// Command flagsdoc prints docs/flags.md: cwpexportd's flags with their
// defaults (see package flags).
package main

import (
	"fmt"
	"os"

	"github.com/cwpexport/cwpexport/server/flags"
)

func main() {
	if err := flags.Markdown(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "flagsdoc:", err)
		os.Exit(1)
	}
}
