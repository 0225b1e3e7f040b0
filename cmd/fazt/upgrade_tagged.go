package main

// tagged holds the verticals that build tags add to the binary: the
// upgrade tests build the binary with -tags fazt_upgradetest, which adds
// one (upgrade_testvertical.go). Normal builds add none.
var tagged []vertical
