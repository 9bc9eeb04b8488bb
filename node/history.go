package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/config"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/postgres"
	"github.com/homemesh/homemesh/sqlite"
)

// startHistory opens the configured history store, declares the streams
// history consumes, so that what is published from now on is kept even
// before the service first pulls, and adds the service.
func (n *Node) startHistory(ctx context.Context, conn func(string) (*natsbus.Conn, error)) error {
	where, err := n.cfg.History()
	if err != nil {
		return err
	}
	retention, err := n.cfg.Retention()
	if err != nil {
		return err
	}
	c, err := conn("history")
	if err != nil {
		return err
	}
	store, err := n.openHistoryStore(ctx, where)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	n.stores = append(n.stores, store)
	n.log.Info("history store open", "service", history.ServiceName, "home_id", n.home.ID, "store", where.String())
	if err := history.Streams(ctx, c, n.home.ID); err != nil {
		return fmt.Errorf("history: declare streams: %w", err)
	}
	svc, err := history.New(history.Config{Home: n.home.ID, Retention: retention},
		history.Deps{Bus: c, Store: store, Log: n.log, Metrics: n.metrics})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	n.runners = append(n.runners, runner{history.ServiceName, svc.Run, svc.Ready()})
	return nil
}

// openHistoryStore opens where. A SQLite history has one writer: the
// process takes the database's lock first, and a second process is told
// so instead of contending for the file.
func (n *Node) openHistoryStore(ctx context.Context, where config.HistoryStore) (history.Store, error) {
	switch {
	case where.SQLite != "":
		if err := os.MkdirAll(filepath.Dir(where.SQLite), 0o700); err != nil {
			return nil, fmt.Errorf("create the directory of %s (--history-store): %w", where.SQLite, err)
		}
		release, err := lockFile(where.SQLite + ".lock")
		if errors.Is(err, errLocked) {
			return nil, &homemesh.Error{Kind: homemesh.KindConflict, Err: err, Message: fmt.Sprintf(
				"another homemesh process writes the SQLite history %s; run one history process per SQLite file, or share a PostgreSQL database (--history-store)", where.SQLite)}
		}
		if err != nil {
			return nil, err
		}
		st, err := sqlite.Open(where.SQLite)
		if err != nil {
			release()
			return nil, err
		}
		return &lockedStore{Store: st, release: release}, nil
	case where.Postgres != "":
		return postgres.Open(ctx, where.Postgres)
	}
	return postgres.OpenSharded(ctx, where.Shards)
}

// lockedStore is a store whose file lock is released when it closes.
type lockedStore struct {
	history.Store
	release func()
}

func (s *lockedStore) Close() error {
	defer s.release()
	return s.Store.Close()
}
