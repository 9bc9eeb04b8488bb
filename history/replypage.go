package history

import (
	"runtime"
	"sync"
)

// parallelRecords is the page size from which a page's records are
// encoded in parallel: a year of hourly statistics (8,760 records) took
// the service longer to encode than the store took to read.
const parallelRecords = 2048

// appendRecord appends the JSON of a page's record i.
type appendRecord func(b []byte, i int) ([]byte, error)

// encodedRecords are records encoded one after another, each followed by
// a comma; ends[i] is where record i's bytes end, comma included, the same
// as the previous end for a record that could not be encoded.
type encodedRecords struct {
	buf  []byte
	ends []int
	errs []recordError
}

type recordError struct {
	index int
	err   error
}

func (e *encodedRecords) encode(from, to int, rec appendRecord) {
	for i := from; i < to; i++ {
		// A record that fails leaves the buffer as it was.
		if out, err := rec(e.buf, i); err != nil {
			e.errs = append(e.errs, recordError{i, err})
		} else {
			e.buf = append(out, ',')
		}
		e.ends = append(e.ends, len(e.buf))
	}
}

// encodePage appends to b, which holds the reply's head (head bytes), the
// JSON of records [0, n), each followed by a comma. It stops before the
// first record whose JSON would take the reply to maxReplyBytes, unless it
// is the first record with any bytes, and returns how many records it took:
// records that cannot be encoded are taken, without bytes, and reported
// through skip. Large pages are encoded in chunks on several cores.
func encodePage(b []byte, head, n int, rec appendRecord, skip func(i int, err error)) (out []byte, taken int) {
	return encodeChunks(b, head, n, min(runtime.GOMAXPROCS(0), 4, n/parallelRecords), rec, skip)
}

// encodeChunks is encodePage in the given number of chunks.
func encodeChunks(b []byte, head, n, chunks int, rec appendRecord, skip func(i int, err error)) (out []byte, taken int) {
	if chunks <= 1 {
		for i := range n {
			out, err := rec(b, i)
			if err != nil {
				skip(i, err)
				continue
			}
			if len(out) >= maxReplyBytes && len(b) > head {
				return b, i
			}
			b = append(out, ',')
		}
		return b, n
	}
	parts := make([]encodedRecords, chunks)
	var wg sync.WaitGroup
	for c := range parts {
		from, to := c*n/chunks, (c+1)*n/chunks
		part := &parts[c]
		part.buf = make([]byte, 0, min(maxReplyBytes, (to-from)*120))
		part.ends = make([]int, 0, to-from)
		if c == 0 {
			continue // encoded below, on this goroutine
		}
		wg.Go(func() { part.encode(from, to, rec) })
	}
	parts[0].encode(0, n/chunks, rec)
	wg.Wait()
	// Join the chunks, cutting the page where the sequential loop would.
	taken = join(&b, head, parts)
	for _, part := range parts {
		for _, e := range part.errs {
			if e.index < taken {
				skip(e.index, e.err)
			}
		}
	}
	return b, taken
}

// join appends the chunks' records to *b up to the first that does not
// fit, and returns how many it appended.
func join(b *[]byte, head int, parts []encodedRecords) int {
	taken := 0
	for _, part := range parts {
		if len(*b)+len(part.buf) < maxReplyBytes {
			*b = append(*b, part.buf...)
			taken += len(part.ends)
			continue
		}
		prev := 0
		for _, end := range part.ends {
			// The record without its comma must stay under the limit.
			if end > prev && len(*b)+end-prev-1 >= maxReplyBytes && len(*b) > head {
				return taken
			}
			*b = append(*b, part.buf[prev:end]...)
			prev = end
			taken++
		}
	}
	return taken
}
