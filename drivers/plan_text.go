package drivers

import (
	"fmt"
	"strings"
)

// String renders the plan in a stable text form for the CLI and golden tests: a header
// naming the app, then one line per change in plan order ("unmanaged" in the action column
// for resources the driver does not own), each change's diff indented under it.
func (p *Plan) String() string {
	var b strings.Builder
	rev := p.App.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	fmt.Fprintf(&b, "plan for app %s (project %s, revision %s)\n", p.App.Name, p.App.Project, rev)
	for _, c := range p.Changes {
		action := string(c.Action)
		if c.Unmanaged {
			action = "unmanaged"
		}
		fmt.Fprintf(&b, "  %-9s %s", action, c.Ref)
		if c.Reason != "" {
			fmt.Fprintf(&b, "  (%s)", c.Reason)
		}
		b.WriteByte('\n')
		if c.Diff == "" {
			continue
		}
		for line := range strings.Lines(c.Diff) {
			line = strings.TrimRight(line, "\n")
			if line != "" {
				b.WriteString("    ")
			}
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
