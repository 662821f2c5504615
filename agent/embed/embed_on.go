//go:build alpinist_agents

package embed

import "embed"

// agents are the agents make builds, one per name of the Makefile's
// AGENTS_FOR (the tested arches' arch.Arch.Agent: arch.TestMakefileAgents).
//
//go:embed agents/alpinist-agent-*
var agents embed.FS

func embedded(agent string) ([]byte, bool) {
	b, err := agents.ReadFile("agents/alpinist-agent-" + agent)
	return b, err == nil
}
