package meta

import "fmt"

// producerIDBlock is how many producer ids one metadata record reserves.
const producerIDBlock = 1000

// NextProducerID hands out a producer id from a block reserved durably in
// the metadata log, so that no id is given twice across restarts.
func (s *Store) NextProducerID() (int64, error) {
	s.pids.Lock()
	defer s.pids.Unlock()
	if s.cfg.Replicated {
		if s.pids.next >= s.pids.end {
			if err := s.reserveProducerIDsReplicated(); err != nil {
				return 0, err
			}
		}
	} else if s.pids.next >= s.reservedPIDs.Load() {
		end := s.pids.next + producerIDBlock
		if err := s.log.Propose([]Record{{Type: TypeProducerIDs, NextProducerID: end}}); err != nil {
			return 0, fmt.Errorf("%w: reserving producer ids: %w", ErrStorage, err)
		}
	}
	id := s.pids.next
	s.pids.next++
	return id, nil
}
