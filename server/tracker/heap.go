package tracker

import "container/heap"

// entryHeap orders scheduled entries by due time.
type entryHeap []*schedEntry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

// Push and Pop implement heap.Interface; use push, remove and fix.
func (h *entryHeap) Push(x any) {
	e := x.(*schedEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

// Pop implements heap.Interface.
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

func (h *entryHeap) push(e *schedEntry)   { heap.Push(h, e) }
func (h *entryHeap) remove(e *schedEntry) { heap.Remove(h, e.index) }
func (h *entryHeap) fix(e *schedEntry)    { heap.Fix(h, e.index) }
