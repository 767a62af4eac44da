package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/replica"
	"github.com/sumkeep/sumkeep/store"
)

// trillianFlags configure the optional Trillian replica (package replica).
type trillianFlags struct {
	addr string
	tree int64
}

// trillianFlags adds --trillian and --trillian-tree to fs.
func (e *env) trillianFlags(fs *flag.FlagSet) *trillianFlags {
	tf := &trillianFlags{}
	fs.StringVar(&tf.addr, "trillian", "", "replica: a Trillian log server's gRPC address (host:port); each head is served only once Trillian's root of the same size agrees (full mode only)")
	fs.Int64Var(&tf.tree, "trillian-tree", 0, "replica: the Trillian PREORDERED_LOG tree to feed (made by 'sumkeep trillian create-tree')")
	return tf
}

// check checks the flags against the sync mode ("" when there is none).
func (tf *trillianFlags) check(mode string) error {
	switch {
	case tf.addr == "" && tf.tree == 0:
		return nil
	case tf.addr == "":
		return usageError{"--trillian-tree needs --trillian (the Trillian log server's address)"}
	case tf.tree == 0:
		return usageError{"--trillian needs --trillian-tree (the tree's id, from 'sumkeep trillian create-tree')"}
	case mode == mirror.ModeLazy:
		return usageError{"--trillian needs full mode: a lazy store holds records with gaps, which Trillian's preordered log cannot take (use --mode full, or auto with an upstream that serves data tiles)"}
	}
	return nil
}

// openReplica sets up the replica the flags name, if any, as e.replica
// for newSyncer. The returned function closes its connection.
func (e *env) openReplica(tf *trillianFlags, st store.Store, log string) (func(), error) {
	if tf.addr == "" {
		return func() {}, nil
	}
	conn, err := replica.Dial(tf.addr)
	if err != nil {
		return nil, envError{fmt.Errorf("--trillian: %w", err)}
	}
	r, err := replica.New(replica.Config{Conn: conn, Addr: tf.addr, TreeID: tf.tree, Records: st, Log: log, Logger: e.logger})
	if err != nil {
		conn.Close()
		return nil, envError{err}
	}
	e.replica = r
	return func() { conn.Close() }, nil
}

func cmdTrillian(ctx context.Context, e *env, args []string) error {
	fs := e.flags("trillian")
	tf := e.trillianFlags(fs)
	name := fs.String("display-name", "", "the tree's display name (default: the log's name)")
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if sub != "create-tree" {
		return usageError{"usage: sumkeep trillian create-tree --trillian ADDR [--display-name NAME]"}
	}
	if tf.addr == "" {
		return usageError{"--trillian is required: the Trillian log server's gRPC address (host:port)"}
	}
	log, err := e.logName()
	if err != nil {
		return err
	}
	if *name == "" {
		*name = log
	}
	conn, err := replica.Dial(tf.addr)
	if err != nil {
		return envError{err}
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	id, err := replica.CreateTree(ctx, conn, *name, "sumkeep replica of "+log)
	if err != nil {
		return fmt.Errorf("--trillian %s: %w", tf.addr, err)
	}
	fmt.Fprintln(e.stdout, id)
	e.logger.Info("created a PREORDERED_LOG tree; pass it to sync and serve", "trillian", tf.addr, "tree", id,
		"flags", fmt.Sprintf("--trillian %s --trillian-tree %d", tf.addr, id))
	return nil
}

// replicaStatus prints the replica's size and whether its root agrees with
// the store's tree of that size. It returns whether it disagrees.
func replicaStatus(ctx context.Context, e *env, tf *trillianFlags, st store.Store, log string) (bool, error) {
	if tf.addr == "" {
		return false, nil
	}
	conn, err := replica.Dial(tf.addr)
	if err != nil {
		return false, envError{err}
	}
	defer conn.Close()
	return showReplica(ctx, e, conn, tf, st, log)
}

func showReplica(ctx context.Context, e *env, conn grpc.ClientConnInterface, tf *trillianFlags, st store.Store, log string) (bool, error) {
	r, err := replica.New(replica.Config{Conn: conn, Addr: tf.addr, TreeID: tf.tree, Records: st, Log: log})
	if err != nil {
		return false, envError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	root, err := r.Latest(ctx)
	if err != nil {
		fmt.Fprintf(e.stdout, "  replica:      %v\n", err)
		return false, nil
	}
	served, err := st.ServedHead(ctx, log)
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(e.stdout, "  replica:      %s: size %d (no head served yet)\n", r, root.Tree.N)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	n := root.Tree.N
	var verdict string
	bad := false
	switch {
	case n == 0:
		verdict = "empty: the next sync catches it up from the store"
	case n > served.Size:
		verdict = fmt.Sprintf("AHEAD of the served head (%d): it holds leaves this store has not served", served.Size)
		bad = true
	default:
		// The store's root at size n, from its tiles, authenticated
		// against the served head.
		want := served.Hash
		if n < served.Size {
			want, err = tlog.TreeHash(n, proof.Authenticated(served.Tree(), storeTiles{ctx, st, log}))
			if err != nil {
				return false, fmt.Errorf("the store's root at size %d: %w", n, err)
			}
		}
		switch {
		case root.Tree.Hash != want:
			verdict = fmt.Sprintf("root DIFFERS from the log's at that size (%v, Trillian %v)", want, root.Tree.Hash)
			bad = true
		case n == served.Size:
			verdict = "root agrees with the served head"
		default:
			verdict = fmt.Sprintf("root agrees with the log's at that size; behind the served head (%d): the next sync catches it up", served.Size)
		}
	}
	fmt.Fprintf(e.stdout, "  replica:      %s: size %d (as of %s), %s\n", r, n, root.Time.Format(time.RFC3339), verdict)
	return bad, nil
}

// storeTiles reads a log's hash tiles from the store.
type storeTiles struct {
	ctx context.Context
	st  store.Reader
	log string
}

func (s storeTiles) Height() int { return store.TileHeight }

func (s storeTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	return s.st.ReadTiles(s.ctx, s.log, tiles)
}

func (s storeTiles) SaveTiles([]tlog.Tile, [][]byte) {}
