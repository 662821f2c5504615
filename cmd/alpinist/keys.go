package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/alpinist/alpinist/apk/sign"
)

// loadKeyring builds the keyring of a spec's or a flag's key paths.
func loadKeyring(paths []string) (*sign.Keyring, error) {
	if len(paths) == 0 {
		return nil, errors.New("no trusted keys: list key directories or .rsa.pub files under keys: in the spec")
	}
	return sign.LoadKeyring(paths...)
}

// sourceDateEpoch returns $SOURCE_DATE_EPOCH, or ok false when unset.
func sourceDateEpoch() (t time.Time, ok bool, err error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, false, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a non-negative number of seconds", v)
	}
	return time.Unix(n, 0).UTC(), true, nil
}
