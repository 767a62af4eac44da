package mirror

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/sumkeep/sumkeep/store"
)

// ErrSchedule reports a schedule that is not a cron spec.
var ErrSchedule = errors.New("not a cron schedule (e.g. '@every 10m' or '*/10 * * * *')")

// CheckSchedule checks a cron spec (robfig/cron/v3's standard form, with
// descriptors such as @every).
func CheckSchedule(spec string) error {
	if _, err := cron.ParseStandard(spec); err != nil {
		return fmt.Errorf("schedule %q: %w: %v", spec, ErrSchedule, err)
	}
	return nil
}

// Schedule says when and how a Syncer runs on its own.
type Schedule struct {
	// Spec is a cron spec, e.g. "@every 10m".
	Spec string
	// StoreTimeout stops a run whose store does not answer a probe within
	// it (see OnceWatched); the next run resumes.
	StoreTimeout time.Duration
	// Ready, if not nil, reports whether the store is ready; a run due
	// while it is not is skipped.
	Ready func() bool
	// Observe, if not nil, is told of every run: once when it starts
	// (Run.Ended zero) and once when it ends. A run that found another
	// process holding the log's sync lock ends with an Err wrapping
	// store.ErrLocked. Runs skipped before starting (store not ready,
	// previous run still going) are not observed. It is what a status page
	// shows of an in-process schedule; it must be quick.
	Observe func(Run)
}

// A Run is one scheduled sync run, as Schedule.Observe sees it.
type Run struct {
	Log     string
	Started time.Time
	Ended   time.Time // zero while the run goes on
	Result  Result    // valid once Ended is set and Err is nil
	Err     error
}

// RunScheduled runs the syncer on sched until ctx ends: at once, then on
// every tick. A run still going when the next is due makes that one skip,
// and so does another process holding the log's sync lock. Each run's
// outcome is logged; a failed run does not stop the schedule.
func (s *Syncer) RunScheduled(ctx context.Context, sched Schedule) error {
	if err := CheckSchedule(sched.Spec); err != nil {
		return err
	}
	c := cron.New()
	var running atomic.Bool
	job := func() {
		if sched.Ready != nil && !sched.Ready() {
			s.logger.Info("waiting for the database; skipping this sync")
			return
		}
		if !running.CompareAndSwap(false, true) {
			s.logger.Info("previous sync still running; skipping this one")
			return
		}
		defer running.Store(false)
		run := Run{Log: s.log, Started: time.Now()}
		if sched.Observe != nil {
			sched.Observe(run)
		}
		res, err := s.OnceWatched(ctx, sched.StoreTimeout)
		if sched.Observe != nil {
			run.Ended, run.Result, run.Err = time.Now(), res, err
			sched.Observe(run)
		}
		if errors.Is(err, store.ErrLocked) {
			s.logger.Info("another process is syncing this log; skipping")
			return
		}
		if err != nil {
			s.logger.Error("sync failed", "err", err)
			return
		}
		s.logger.Info("sync done", "served", res.Served.Size, "records", res.Records)
	}
	if _, err := c.AddFunc(sched.Spec, job); err != nil {
		return fmt.Errorf("schedule %q: %w: %v", sched.Spec, ErrSchedule, err)
	}
	c.Start()
	go job() // do not wait for the first tick
	<-ctx.Done()
	<-c.Stop().Done()
	return nil
}

// OnceWatched runs Once, stopping it when the store stops answering: every
// quarter of timeout (at least every second) the store is asked for its
// logs with that deadline. A run stopped so fails with an error saying so,
// instead of waiting forever on a database that accepts connections but
// answers nothing; the next run resumes where it stopped. A timeout of 0
// runs Once unwatched.
func (s *Syncer) OnceWatched(ctx context.Context, timeout time.Duration) (Result, error) {
	if timeout <= 0 {
		return s.Once(ctx)
	}
	wctx, stop := watchStore(ctx, s.cfg.Store, timeout)
	defer stop()
	res, err := s.Once(wctx)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		err = fmt.Errorf("sync %s stopped: %w (the next run resumes where this one stopped)", s.log, context.Cause(wctx))
	}
	return res, err
}

// watchStore returns a context that ends when ctx does or when st stops
// answering (see OnceWatched); its cause then says so. The returned
// function stops the watch.
func watchStore(ctx context.Context, st store.Store, timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTicker(max(timeout/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, done := context.WithTimeout(ctx, timeout)
			_, err := st.Logs(pctx)
			done()
			if err != nil && ctx.Err() == nil && store.Unavailable(err) {
				cancel(fmt.Errorf("the store did not answer within %v: %w", timeout, err))
				return
			}
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}
