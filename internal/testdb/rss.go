package testdb

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PeakRSSMiB returns the peak resident memory (VmHWM) of process pid, or
// of this process for pid 0, in MiB.
func PeakRSSMiB(pid int) (float64, error) {
	file := "/proc/self/status"
	if pid != 0 {
		file = fmt.Sprintf("/proc/%d/status", pid)
	}
	status, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return float64(kb) / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in %s", file)
}
