// A minimal typed listener list: listeners are called in subscription order and one
// listener's exception does not keep the others from being called.
export class Emitter<A extends unknown[]> {
  private listeners: Array<(...args: A) => void> = [];

  on(fn: (...args: A) => void): () => void {
    this.listeners = [...this.listeners, fn];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  emit(...args: A): void {
    for (const fn of this.listeners) {
      try {
        fn(...args);
      } catch (e) {
        console.error("listener failed", e);
      }
    }
  }
}
