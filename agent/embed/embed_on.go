//go:build alpinist_agents

package embed

import "embed"

// agents are the agents make builds, one per name of the Makefile's
// AGENTS_FOR (the tested arches' arch.Arch.Agent: arch.TestMakefileAgents),
// each compressed by Pack.
//
//go:embed agents/alpinist-agent-*.zst
var agents embed.FS

func embedded(agent string) ([]byte, bool, error) {
	z, err := agents.ReadFile("agents/alpinist-agent-" + agent + ".zst")
	if err != nil {
		return nil, false, nil
	}
	b, err := unpack(z)
	return b, true, err
}
