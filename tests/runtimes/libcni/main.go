// cnivpc-libcni: a CNI runtime reduced to libcni's network-list API, for the tests.
//
// containerd (through go-cni), CRI-O (through ocicni) and podman's CNI backend all drive plugins
// through the same few libcni calls. This driver makes exactly those calls on one conflist, so
// a test sees what those runtimes would: libcni's exec environment (its own environment plus
// CNI_*), its stdin (cniVersion, name, prevResult and runtimeConfig injected per plugin), its
// result cache (the prevResult of CHECK and DEL comes from the cache file, not from the
// caller), its parsing and conversion of the ADD result (it rejects a result version it does
// not know) and its error handling.
//
//	cnivpc-libcni COMMAND -conflist FILE [-id ID] [-netns PATH] [-ifname NAME]
//	              [-path DIR:DIR] [-cache DIR] [-args 'K=V;K=V'] [-capargs JSON]
//
// COMMAND: add (prints the result), check, del, cached (prints the cached result or
// nothing), validate (VERSION to each plugin: each must support the list's cniVersion; prints
// the capabilities the list declares).
// libcni 1.1.x has no GC or STATUS: CNI 1.1's garbage collection arrived in libcni 1.2.
//
// Exit status: 0 success; 1 the plugin (or libcni) reported an error, whose text is on stdout
// as {"error": ..., "code": N} (N is the CNI error code when the plugin returned CNI error
// JSON, else 0); 2 bad usage.
//
// Built offline in GOPATH mode against Debian's golang-github-appc-cni-dev (libcni 1.1.2).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func usage(msg string) int {
	fmt.Fprintf(os.Stderr, "cnivpc-libcni: %s\n", msg)
	fmt.Fprintln(os.Stderr, "usage: cnivpc-libcni add|check|del|cached|validate -conflist FILE [flags]")
	return 2
}

func run(argv []string) int {
	if len(argv) < 1 {
		return usage("no command")
	}
	command := argv[0]
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	conflist := fs.String("conflist", "", "the network configuration list (JSON)")
	id := fs.String("id", "cnivpc-libcni", "container ID")
	netns := fs.String("netns", "", "the container's network namespace path")
	ifname := fs.String("ifname", "eth0", "the interface name in the container")
	path := fs.String("path", os.Getenv("CNI_PATH"), "plugin directories, colon-separated")
	cache := fs.String("cache", "", "libcni's cache directory (results and configs)")
	args := fs.String("args", "", "CNI_ARGS, 'K=V;K=V'")
	capArgs := fs.String("capargs", "", "runtimeConfig capability arguments (JSON object)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(argv[1:]); err != nil {
		return 2
	}
	if *conflist == "" {
		return usage("-conflist is required")
	}
	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		return fail(err)
	}
	rt := &libcni.RuntimeConf{
		ContainerID: *id,
		NetNS:       *netns,
		IfName:      *ifname,
		Args:        splitArgs(*args),
	}
	if *capArgs != "" {
		if err := json.Unmarshal([]byte(*capArgs), &rt.CapabilityArgs); err != nil {
			return usage("-capargs: " + err.Error())
		}
	}
	var dirs []string
	for _, dir := range filepath.SplitList(*path) {
		if dir != "" {
			dirs = append(dirs, dir)
		}
	}
	// nil Exec: libcni's default, which runs plugins as every runtime does.
	cni := libcni.NewCNIConfigWithCacheDir(dirs, *cache, nil)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	switch command {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return fail(err)
		}
		return print(result)
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			return fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			return fail(err)
		}
	case "cached":
		result, err := cni.GetNetworkListCachedResult(list, rt)
		if err != nil {
			return fail(err)
		}
		if result != nil {
			return print(result)
		}
	case "validate":
		// VERSION to every plugin: each must list the conflist's cniVersion. podman does this
		// for every conflist it loads and drops a network that fails it.
		capabilities, err := cni.ValidateNetworkList(ctx, list)
		if err != nil {
			return fail(err)
		}
		return print(map[string][]string{"capabilities": capabilities})
	default:
		return usage("unknown command " + command)
	}
	return 0
}

// splitArgs turns 'K=V;K=V' into libcni's pairs (which it joins back the same way).
func splitArgs(s string) [][2]string {
	var pairs [][2]string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		pairs = append(pairs, [2]string{k, v})
	}
	return pairs
}

func print(v interface{}) int {
	out, err := json.Marshal(v)
	if err != nil {
		return fail(err)
	}
	fmt.Println(string(out))
	return 0
}

func fail(err error) int {
	code := uint(0)
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		code = cniErr.Code
	}
	out, _ := json.Marshal(map[string]interface{}{"error": err.Error(), "code": code})
	fmt.Println(string(out))
	return 1
}
