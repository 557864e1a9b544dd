;; spin: never returns (the host's time limit must stop it).
(module
  ;;@alloc
  (func (export "handle") (param $p i32) (param $n i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
