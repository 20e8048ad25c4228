package cachedir

import (
	"fmt"
	"os"
	"path/filepath"
)

// TmpPrefix starts the names of the temporary files written beside their
// final names: a run holding the lock alone removes those a killed run left.
const TmpPrefix = ".tmp-"

// CreateTemp creates a temporary file in dir, to be renamed into place.
func CreateTemp(dir string) (*os.File, error) {
	return os.CreateTemp(dir, TmpPrefix+"*")
}

// WriteFile writes data to a temporary file beside name, with permissions
// perm, and renames it to name, so that readers and interrupted runs see the
// old file or the new one, never a part.
func WriteFile(name string, data []byte, perm os.FileMode) error {
	tmp, err := CreateTemp(filepath.Dir(name))
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
