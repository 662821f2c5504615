//go:build alpinist_agents

package embed

import "embed"

// agents are the agents make builds, one per GOARCH of the Makefile's
// AGENT_GOARCHES (the arch table's tested arches: arch.TestMakefileAgents).
//
//go:embed agents/alpinist-agent-*
var agents embed.FS

func embedded(goarch string) ([]byte, bool) {
	b, err := agents.ReadFile("agents/alpinist-agent-" + goarch)
	return b, err == nil
}
