package agent

import "os"

// SetOpenFile replaces how the backup opens files and returns a restore func.
func SetOpenFile(f func(string, int, os.FileMode) (*os.File, error)) func() {
	old := openFile
	openFile = f
	return func() { openFile = old }
}
