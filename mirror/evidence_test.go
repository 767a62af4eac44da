package mirror_test

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/mod/module"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/upstream"
)

// evidenceFails is a real store whose AddEvidence fails, as it does when the
// database goes away at the moment a lie is caught.
type evidenceFails struct{ store.Store }

var errEvidenceStore = errors.New("evidence table unavailable")

func (evidenceFails) AddEvidence(context.Context, string, store.Evidence) error {
	return errEvidenceStore
}

// TestLieStopsSeedWhenEvidenceFails: a lie met while the evidence cannot be
// stored is still a MisbehaviourError, so seed stops on it rather than
// counting it as an ordinary failure and asking the lying upstream for the
// rest of the go.sum.
func TestLieStopsSeedWhenEvidenceFails(t *testing.T) {
	ctx := context.Background()
	u, url := newUpstream(t, 3000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	st := evidenceFails{newStore(t)}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Once(ctx); err != nil {
		t.Fatal(err)
	}
	f := forkOf(t, u, 2500, 1000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFork, Fork: f})
	var mods []module.Version
	for _, id := range []int64{3200, 3201, 3202, 3203} {
		p, v, _ := f.Module(id)
		mods = append(mods, module.Version{Path: p, Version: v})
	}
	counts, failures, err := s.Seed(ctx, mods, 1, nil)
	var me *mirror.MisbehaviourError
	if !errors.As(err, &me) || me.Evidence.Kind != store.EvidenceFork {
		t.Fatalf("seed through a fork with evidence failing: err = %v (counts %+v, failures %v); want a MisbehaviourError of kind %s",
			err, counts, failures, store.EvidenceFork)
	}
	if !errors.Is(err, errEvidenceStore) {
		t.Errorf("error %v does not say why the evidence was not kept", err)
	}
	if counts.Done() != 0 {
		t.Errorf("seed went on after the lie: %+v", counts)
	}
}
