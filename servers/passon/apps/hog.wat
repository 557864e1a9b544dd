;; hog: grows memory one page at a time until the host refuses, then traps.
(module
  ;;@alloc
  (func (export "handle") (param $p i32) (param $n i32) (result i32)
    (loop $more
      (br_if $more (i32.ge_s (memory.grow (i32.const 1)) (i32.const 0))))
    (unreachable)))
