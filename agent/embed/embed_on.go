//go:build alpinist_agents

package embed

import _ "embed"

//go:embed agents/alpinist-agent-amd64
var agentAMD64 []byte

//go:embed agents/alpinist-agent-arm64
var agentARM64 []byte

//go:embed agents/alpinist-agent-riscv64
var agentRISCV64 []byte

func embedded(goarch string) ([]byte, bool) {
	switch goarch {
	case "amd64":
		return agentAMD64, true
	case "arm64":
		return agentARM64, true
	case "riscv64":
		return agentRISCV64, true
	}
	return nil, false
}
