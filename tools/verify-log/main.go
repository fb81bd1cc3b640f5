// verify-log checks a gateway's pairing log (ngx_http_device_pairing_module)
// with Go's own implementations of the formats it uses: golang.org/x/mod's
// sumdb/note (C2SP signed notes) and sumdb/tlog (RFC 6962 hashes and
// proofs). Nothing here comes from the module's code.
//
//	verify-log -url http://gateway [-token T] [-pin PUBKEY] [-state FILE] [-entries]
//
// -pin is the gateway identity's Ed25519 public key (base64) the auditor
// trusts; the identity's hand-over notes lead from it to the current key,
// each signed by the key it replaces and the key it names. -state keeps the
// last checkpoint verified (and the key reached): the next run proves the
// new checkpoint consistent with it. -entries reads every leaf and rebuilds
// the root. Exit status 1 on any failure, with the reason.
package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var (
	baseURL = flag.String("url", "", "the gateway's base URL")
	token   = flag.String("token", "", "a bearer token (owner or device) unless the log is public")
	pin     = flag.String("pin", "", "the identity public key (base64) trusted; default: the state file's, else the one served now")
	state   = flag.String("state", "", "a file keeping the last verified checkpoint")
	entries = flag.Bool("entries", false, "read every leaf and rebuild the root")
)

type kept struct {
	Size int64  `json:"size"`
	Root string `json:"root"`
	Key  string `json:"key"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "verify-log: FAILED: "+format+"\n", args...)
	os.Exit(1)
}

func get(path string) []byte {
	req, err := http.NewRequest("GET", strings.TrimRight(*baseURL, "/")+path, nil)
	if err != nil {
		fail("%v", err)
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fail("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		fail("GET %s: %d %s", path, res.StatusCode, body)
	}
	return body
}

func getJSON(path string, into interface{}) {
	if err := json.Unmarshal(get(path), into); err != nil {
		fail("GET %s: %v", path, err)
	}
}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			fail("a proof hash is not 32 bytes of base64: %q", s)
		}
		copy(out[i][:], b)
	}
	return out
}

func verifierFor(origin, key string) note.Verifier {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		fail("not an Ed25519 public key: %q", key)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, ed25519.PublicKey(raw))
	if err != nil {
		fail("%v", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		fail("%v", err)
	}
	return v
}

// signedBy says whether the opened note carries a valid signature by v.
func signedBy(n *note.Note, v note.Verifier) bool {
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			return true
		}
	}
	return false
}

// follow walks the hand-over chain from key: each note names the origin,
// the old key and the new, and must be signed by both.
func follow(origin, key string, handovers []string) string {
	for i, text := range handovers {
		lines := strings.Split(text, "\n")
		if len(lines) < 4 || lines[0] != origin+" identity hand-over" || !strings.HasPrefix(lines[1], "old ") ||
			!strings.HasPrefix(lines[2], "new ") || !strings.HasPrefix(lines[3], "size ") {
			fail("hand-over %d is not a hand-over note", i)
		}
		old, next := strings.TrimPrefix(lines[1], "old "), strings.TrimPrefix(lines[2], "new ")
		if old != key {
			fail("hand-over %d starts from %s, not from the key reached (%s)", i, old, key)
		}
		vOld, vNew := verifierFor(origin, old), verifierFor(origin, next)
		n, err := note.Open([]byte(text), note.VerifierList(vOld, vNew))
		if err != nil {
			fail("hand-over %d: %v", i, err)
		}
		if !signedBy(n, vOld) || !signedBy(n, vNew) {
			fail("hand-over %d is not signed by both the old key and the new", i)
		}
		fmt.Printf("hand-over %d: %s -> %s (signed by both)\n", i, old, next)
		key = next
	}
	return key
}

func main() {
	flag.Parse()
	if *baseURL == "" {
		fail("-url is required")
	}
	var previous *kept
	if *state != "" {
		if b, err := os.ReadFile(*state); err == nil {
			previous = new(kept)
			if err := json.Unmarshal(b, previous); err != nil {
				fail("%s: %v", *state, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			fail("%v", err)
		}
	}
	var identity struct {
		PublicKey string   `json:"publicKey"`
		Handovers []string `json:"handovers"`
	}
	getJSON("/api/devices/identity", &identity)
	checkpoint := get("/api/devices/log/checkpoint")
	origin := string(checkpoint[:bytes.IndexByte(checkpoint, '\n')])

	key := *pin
	if key == "" && previous != nil {
		key = previous.Key
	}
	if key == "" {
		key = identity.PublicKey
		fmt.Printf("no key pinned: trusting the identity served now, %s\n", key)
	}
	key = follow(origin, key, identity.Handovers)
	if key != identity.PublicKey {
		fail("the hand-overs lead to %s, but the gateway's identity is %s", key, identity.PublicKey)
	}

	v := verifierFor(origin, key)
	n, err := note.Open(checkpoint, note.VerifierList(v))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != origin {
		fail("checkpoint text is not origin, size, root: %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		fail("checkpoint size %q", lines[1])
	}
	root := hashes([]string{lines[2]})[0]
	fmt.Printf("checkpoint: %s, %d leaves, root %s, signed by %s\n", origin, size, lines[2], key)

	if previous != nil && previous.Size > 0 {
		oldRoot := hashes([]string{previous.Root})[0]
		switch {
		case previous.Size > size:
			fail("the log shrank: %d leaves were verified before, the checkpoint has %d", previous.Size, size)
		case previous.Size == size:
			if oldRoot != root {
				fail("the root of %d leaves changed since it was verified", size)
			}
		default:
			var proof struct{ Hashes []string }
			getJSON(fmt.Sprintf("/api/devices/log/proof/consistency?old=%d&new=%d", previous.Size, size), &proof)
			if err := tlog.CheckTree(hashes(proof.Hashes), size, root, previous.Size, oldRoot); err != nil {
				fail("not consistent with the checkpoint kept (%d leaves): %v", previous.Size, err)
			}
		}
		fmt.Printf("consistent with the checkpoint kept (%d leaves)\n", previous.Size)
	}

	if *entries && size > 0 {
		var stored []tlog.Hash
		reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(indexes))
			for i, x := range indexes {
				out[i] = stored[x]
			}
			return out, nil
		})
		leaves := make([][]byte, 0, size)
		for start := int64(0); start < size; {
			var page struct {
				Entries []struct {
					Index int64
					Leaf  string
				}
			}
			getJSON(fmt.Sprintf("/api/devices/log/entries?start=%d&end=%d", start, size), &page)
			if len(page.Entries) == 0 {
				fail("no entries from %d", start)
			}
			for _, e := range page.Entries {
				if e.Index != start {
					fail("entry %d came where %d was asked", e.Index, start)
				}
				data, err := base64.StdEncoding.DecodeString(e.Leaf)
				if err != nil {
					fail("entry %d: %v", e.Index, err)
				}
				more, err := tlog.StoredHashes(start, data, reader)
				if err != nil {
					fail("%v", err)
				}
				stored = append(stored, more...)
				leaves = append(leaves, data)
				start++
			}
		}
		rebuilt, err := tlog.TreeHash(size, reader)
		if err != nil || rebuilt != root {
			fail("the entries hash to %v, not to the checkpoint's root", rebuilt)
		}
		fmt.Printf("entries: %d leaves hash to the checkpoint's root\n", size)
		for _, i := range []int64{0, size / 2, size - 1} {
			var proof struct{ Hashes []string }
			getJSON(fmt.Sprintf("/api/devices/log/proof/inclusion?index=%d&size=%d", i, size), &proof)
			if err := tlog.CheckRecord(hashes(proof.Hashes), size, root, i, tlog.RecordHash(leaves[i])); err != nil {
				fail("inclusion proof of leaf %d: %v", i, err)
			}
		}
		fmt.Println("inclusion proofs of the first, middle and last leaves: ok")
	}

	if *state != "" {
		b, _ := json.Marshal(kept{size, lines[2], key})
		if err := os.WriteFile(*state, b, 0o600); err != nil {
			fail("%v", err)
		}
	}
	fmt.Println("verify-log: ok")
}
